"""Per-column standardization, fitted on training sequences only and saved as plain numbers.

Knows Sequences and numpy, not models. Inputs are fitted over every training step, targets
over the scored training steps (weight > 0), so nothing of a validation tail leaks in. A
column that is constant in the training data keeps scale 1 (it is only shifted).

Targets are scaled only when they are real values (loss "mse"): the 0/1 targets of "bce"
and the class indices of "ce" are never scaled (`Scaling.fit(train, targets=False)`, or
`Scaling.for_loss(train, loss)`), and `y` is then None.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from statefulrnn.data.sequences import Sequences


@dataclass(frozen=True)
class Standardizer:
    """(a - mean) / std per column; `invert` undoes it."""

    mean: np.ndarray  # [C]
    std: np.ndarray  # [C], > 0

    @classmethod
    def fit(cls, rows: np.ndarray, names=None, what: str = "column") -> Standardizer:
        """Fit on rows [N, C]. Columns whose squares overflow (values near 1e300) are fitted
        on values divided by their largest magnitude; a mean or scale that is still not
        finite is a ValueError naming the column (`names[j]`, else its index)."""
        if rows.shape[0] == 0:
            raise ValueError("cannot fit a standardizer on zero rows.")
        with np.errstate(over="ignore", invalid="ignore"):
            mean = rows.mean(0)
            std = rows.std(0)
            huge = ~(np.isfinite(mean) & np.isfinite(std))
            if huge.any():  # only then: ordinary columns keep numpy's exact mean and std
                big = np.abs(rows[:, huge]).max(0)
                big = np.where(np.isfinite(big) & (big > 0), big, 1.0)
                unit = rows[:, huge] / big
                mean[huge] = unit.mean(0) * big
                std[huge] = unit.std(0) * big
        bad = ~(np.isfinite(mean) & np.isfinite(std))
        if bad.any():
            j = int(np.argmax(bad))
            name = repr(names[j]) if names is not None else str(j)
            raise ValueError(
                f"cannot standardize {what} {name}: its mean or standard deviation is not "
                f"finite (mean {mean[j]:.3g}, std {std[j]:.3g}); every value must be a finite "
                "number. Rescale the column."
            )
        std = np.where(std > 1e-12 * np.maximum(np.abs(mean), 1.0), std, 1.0)
        return cls(mean, std)

    def apply(self, a: np.ndarray) -> np.ndarray:
        return (a - self.mean) / self.std

    def invert(self, a: np.ndarray) -> np.ndarray:
        return a * self.std + self.mean

    def to_dict(self, names: list[str] | tuple[str, ...]) -> dict[str, Any]:
        return {"columns": list(names), "mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Standardizer:
        return cls(np.asarray(d["mean"], dtype=np.float64), np.asarray(d["std"], dtype=np.float64))


@dataclass(frozen=True)
class Scaling:
    """Standardizers for inputs (`x`) and targets (`y`; None: targets are left as they are)."""

    x: Standardizer
    y: Standardizer | None

    @classmethod
    def fit(
        cls, train: Sequences, *, targets: bool = True, feature_names=None, target_names=None
    ) -> Scaling:
        """x over every step of `train`, y over its scored steps only (`targets=False`: y is
        not scaled, as for 0/1 or class-index targets). The names are for errors."""
        x = Standardizer.fit(np.concatenate(train.xs), feature_names, "input column")
        if not targets:
            return cls(x, None)
        y_rows = np.concatenate([y[w > 0] for y, w in zip(train.ys, train.ws)])
        return cls(x, Standardizer.fit(y_rows, target_names, "target column"))

    @classmethod
    def for_loss(cls, train: Sequences, loss: str, **names) -> Scaling:
        """Inputs always; targets only for "mse" (never bce's 0/1 nor ce's class indices)."""
        return cls.fit(train, targets=loss == "mse", **names)

    def apply(self, seqs: Sequences, *, targets: bool = True) -> Sequences:
        """Scaled copies; `targets=False` scales inputs only (targets left as they are)."""
        xs = [self.x.apply(x) for x in seqs.xs]
        scale_y = targets and self.y is not None and seqs.num_outputs > 0
        ys = [self.y.apply(y) for y in seqs.ys] if scale_y else list(seqs.ys)  # type: ignore[union-attr]
        return Sequences(xs, ys, list(seqs.ws))

    def invert(self, outputs: list[np.ndarray]) -> list[np.ndarray]:
        """Model outputs back in the targets' units."""
        if self.y is None:
            return list(outputs)
        return [self.y.invert(o) for o in outputs]

    def to_dict(self, features, targets) -> dict[str, Any]:
        y = None if self.y is None else self.y.to_dict(targets)
        return {"x": self.x.to_dict(features), "y": y}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Scaling:
        y = None if d.get("y") is None else Standardizer.from_dict(d["y"])
        return cls(Standardizer.from_dict(d["x"]), y)
