"""ModelBundle: one trained model and everything that turns the user's units into its and back.

A network alone answers in its own units: standardized targets, logits. A bundle adds what
training knew: input/target scaling, the output link implied by the loss (identity for
"mse", sigmoid for "bce", softmax for "ce"), feature/target names, and the training mode and
window (so prediction defaults to the mode the model was trained for). Every entry point goes
through it: `sr.predict`, `statefulrnn predict/evaluate/stream`, `StreamPool`, ONNX export,
and any server.

    user x ──to_model──► (x - x_mean) / x_std ──network──► y_model ──to_user──► link, then
                                                                       y · y_std + y_mean (mse)

The API (all in user units unless named "model"):

    bundle = sr.load_bundle("models/elec")          # any model folder: `statefulrnn train`'s,
                                                    # or `sr.fit` then `model.save(dir)`
    bundle = sr.ModelBundle.of(model)               # the bundle `sr.fit` recorded on a model
    bundle.predict(seqs)                            # list of [T_i, O] arrays; mode/window
                                                    # default to the training ones
    bundle.to_model(x) / bundle.to_user(y_model)    # numpy or torch, any leading shape
    pool = bundle.stream_pool(capacity=None)        # a StreamPool taking and giving user units
    y = pool.step(["a", "b"], x[2, k, F])           #   (same as sr.StreamPool(bundle))
    bundle.export_onnx("model.onnx")                # scaling and link inside the graph
    bundle.save("models/copy")                      # weights + extra.json["bundle"]

On disk the bundle is `extra.json["bundle"]` beside the weights (plain JSON, see `info()`):

    {"format": "statefulrnn-bundle/1", "loss": "mse", "link": "identity",
     "features": [...], "targets": [...], "mode": "stateful", "window": 50,
     "fit": {"stride": ..., "target": ..., "burn_in": ..., ...},
     "scaling": {"x": {"columns", "mean", "std"}, "y": {...} or null}}

A folder with no bundle (an older table model, a bare `model.save`) still loads: a table
model's scaling is read from its older keys; a bare model gets the identity bundle (no
scaling, identity link), which is exactly what its network computes.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from statefulrnn.data.scaling import Scaling
from statefulrnn.data.schedule import pack
from statefulrnn.data.sequences import Sequences
from statefulrnn.model.base import RecurrentModel, load_extra, load_model
from statefulrnn.modes import TRAIN_MODES

if TYPE_CHECKING:
    from statefulrnn.streams.pool import StreamPool

FORMAT = "statefulrnn-bundle/1"
LINKS = {"mse": "identity", "bce": "sigmoid", "ce": "softmax"}


@dataclass(frozen=True)
class ModelBundle:
    """A network plus the contract between the user's units and the network's.

    `scaling`: None or a `Scaling` (its `y` is None for bce/ce: 0/1 targets and class indices
    are never scaled). `loss` decides the link. `mode`/`window`: how it was trained, so
    prediction defaults to the matching mode ("stateless" training -> windowed prediction).
    `fit`: the other training settings that matter to prediction (burn_in, stride, target).
    """

    model: RecurrentModel
    scaling: Scaling | None = None
    loss: str = "mse"
    features: tuple[str, ...] = ()
    targets: tuple[str, ...] = ()
    mode: str = "stateful"
    window: int | None = None
    fit: dict[str, Any] = field(default_factory=dict)
    # the scaling as tensors, one pair per (part, dtype, device): StreamPool scales every step
    _moments: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        if self.loss not in LINKS:
            raise ValueError(f"unknown loss {self.loss!r}; choose one of {sorted(LINKS)}.")
        if self.mode not in TRAIN_MODES:
            raise ValueError(f"unknown training mode {self.mode!r}; choose one of {TRAIN_MODES}.")
        if self.scaling is not None:
            if len(self.scaling.x.mean) != self.model.input_size:
                raise ValueError(
                    f"input scaling has {len(self.scaling.x.mean)} columns but the model takes "
                    f"{self.model.input_size} features."
                )
            if self.scaling.y is not None and self.loss != "mse":
                raise ValueError(
                    f"loss {self.loss!r} targets (0/1 or class indices) are never scaled; "
                    "give a Scaling with y=None."
                )

    # ------------------------------------------------------------- the contract
    @property
    def link(self) -> str:
        """The output link, "identity", "sigmoid" or "softmax", implied by the loss."""
        return LINKS[self.loss]

    @property
    def predict_mode(self) -> str:
        """The prediction mode matching training: windowed for stateless, else stateful."""
        return "windowed" if self.mode == "stateless" else "stateful"

    def to_model(self, x):
        """User inputs [..., F] (numpy or tensor) -> what the network takes."""
        if self.scaling is None:
            return x
        return self._affine(x, "x", invert=False)

    def to_user(self, y_model):
        """Network outputs [..., O] (numpy or tensor) -> user units: the link, then the target
        scaling undone (mse). bce gives probabilities, ce one probability per class."""
        y = y_model
        if self.link != "identity":
            t = y if isinstance(y, torch.Tensor) else torch.from_numpy(np.asarray(y))
            t = torch.sigmoid(t) if self.link == "sigmoid" else torch.softmax(t, -1)
            y = t if isinstance(y, torch.Tensor) else t.numpy()
        if self.scaling is not None and self.scaling.y is not None:
            y_user = self._affine(y, "y", invert=True)
            if not isinstance(y_user, torch.Tensor) and _scale_near_overflow(self.scaling.y):
                self._warn_overflow(np.asarray(y), y_user)
            y = y_user
        return y

    def _warn_overflow(self, y_model: np.ndarray, y_user: np.ndarray) -> None:
        """Say so when outputs that were finite are not in the targets' units (a scale near
        float64's limit, 1.8e308): such a prediction is out of range, not a number to use."""
        lost = np.isfinite(y_model) & ~np.isfinite(y_user)
        if lost.any():
            col = int(np.argwhere(lost)[0][-1])
            name = self.targets[col] if col < len(self.targets) else str(col)
            warnings.warn(
                f"{int(lost.sum())} prediction(s) of target {name!r} overflow float64 in the "
                f"targets' units (scale {self.scaling.y.std[col]:.3g}, mean "  # type: ignore[union-attr]
                f"{self.scaling.y.mean[col]:.3g}): they are written as inf. Rescale the column "  # type: ignore[union-attr]
                "(e.g. divide it by 1e300) and train again.",
                RuntimeWarning,
                stacklevel=3,
            )

    def _affine(self, a, part: str, *, invert: bool):
        """(a - mean) / std, or a · std + mean, with the scaling's `part` ("x" or "y"), for
        numpy arrays and tensors alike."""
        scale = getattr(self.scaling, part)
        if isinstance(a, torch.Tensor):
            if a.is_floating_point() and not _fits(scale, a.dtype):
                a = a.double()  # e.g. a std of 1e300 in float32: work in float64
            key = (part, a.dtype, a.device)
            if key not in self._moments:
                self._moments[key] = (
                    torch.as_tensor(scale.mean, dtype=a.dtype, device=a.device),
                    torch.as_tensor(scale.std, dtype=a.dtype, device=a.device),
                )
            m, s = self._moments[key]
            return a * s + m if invert else (a - m) / s
        arr = np.asarray(a)
        dtype = arr.dtype if arr.dtype.kind == "f" else np.float64
        if not _fits(scale, dtype):  # e.g. a std of 1e300 in float32: work in float64
            dtype = np.dtype(np.float64)
        mean, std = scale.mean.astype(dtype), scale.std.astype(dtype)
        with np.errstate(over="ignore", invalid="ignore"):  # to_user says it in words
            return arr * std + mean if invert else (arr - mean) / std

    def to_model_sequences(self, seqs: Sequences, *, targets: bool = True) -> Sequences:
        """Sequences as the network saw them in training (inputs, and mse targets, scaled)."""
        if self.scaling is None:
            return seqs
        return self.scaling.apply(seqs, targets=targets)

    # ------------------------------------------------------------- entry points
    def predict(
        self,
        seqs: Sequences,
        *,
        mode: str | None = None,
        window: int | None = None,
        burn_in: int | str | None = None,
        batch_size: int = 256,
    ) -> list[np.ndarray]:
        """User-unit outputs of every step of every sequence (list of [T_i, O] arrays).

        `mode` defaults to the training one (`predict_mode`), `window` to the training window,
        `burn_in` to the training burn-in (windowed only)."""
        from statefulrnn.outputs import outputs_in_model_units

        mode = mode or self.predict_mode
        if mode == "windowed":
            window = window or self.window
            if burn_in is None:
                burn_in = self.fit.get("burn_in")
        scaled = self.to_model_sequences(seqs, targets=False)
        # prediction never reads the targets: zeros, so raw ones (say near 1e300) are not cast
        # to the model's float32 along the way
        scaled = Sequences(scaled.xs, [np.zeros_like(y) for y in scaled.ys], list(scaled.ws))
        packed = outputs_in_model_units(self.model, scaled, mode, window, burn_in, batch_size)
        out = self.to_user(packed)
        offsets = pack(seqs).offsets
        return [out[offsets[i] : offsets[i + 1]] for i in range(len(offsets) - 1)]

    def stream_pool(
        self, capacity: int | None = None, spill_dir: str | Path | None = None, **kwargs: Any
    ) -> StreamPool:
        """A StreamPool whose `step(ids, x)` takes user inputs and returns user outputs."""
        from statefulrnn.streams.pool import StreamPool

        return StreamPool(self, capacity, spill_dir, **kwargs)

    def export_onnx(self, path: str | Path, **kwargs: Any) -> Path:
        """ONNX of one step with the scaling and the link inside the graph: inputs x [B, F]
        in user units and the state; outputs y [B, O] in user units and the next state."""
        from statefulrnn.export import export_onnx

        return export_onnx(self.model, path, bundle=self, **kwargs)

    # ------------------------------------------------------------- files
    def info(self) -> dict[str, Any]:
        """The JSON written to extra.json["bundle"]."""
        names_x = list(self.features) or [f"x{j}" for j in range(self.model.input_size)]
        names_y = list(self.targets) or [f"y{j}" for j in range(self.model.output_size)]
        scaling = None if self.scaling is None else self.scaling.to_dict(names_x, names_y)
        return {
            "format": FORMAT,
            "loss": self.loss,
            "link": self.link,
            "features": list(self.features),
            "targets": list(self.targets),
            "mode": self.mode,
            "window": self.window,
            "fit": dict(self.fit),
            "scaling": scaling,
        }

    @classmethod
    def from_info(cls, model: RecurrentModel, info: dict[str, Any] | None) -> ModelBundle:
        """The bundle described by `info` (None: the identity bundle of a bare model)."""
        if not info:
            return cls(model)
        if info.get("format") != FORMAT:
            raise ValueError(
                f"unknown bundle format {info.get('format')!r}; this statefulrnn reads {FORMAT}."
            )
        scaling = info.get("scaling")
        return cls(
            model,
            scaling=None if scaling is None else Scaling.from_dict(scaling),
            loss=info.get("loss", "mse"),
            features=tuple(info.get("features", ())),
            targets=tuple(info.get("targets", ())),
            mode=info.get("mode", "stateful"),
            window=info.get("window"),
            fit=dict(info.get("fit") or {}),
        )

    @classmethod
    def of(cls, model: RecurrentModel) -> ModelBundle:
        """The bundle recorded on `model` (by `sr.fit`, or loaded from its folder)."""
        return cls.from_info(model, getattr(model, "bundle_info", None))

    def attach(self) -> RecurrentModel:
        """Record this bundle on its model: `model.save` writes it, `sr.predict(model, ...)`
        and `ModelBundle.of(model)` use it. Returns the model."""
        self.model.bundle_info = self.info()
        return self.model

    def save(self, path: str | Path, extra: dict[str, Any] | None = None) -> Path:
        """Write the model folder: weights, model.json and extra.json with this bundle."""
        return self.model.save(path, extra={**(extra or {}), "bundle": self.info()})


def load_bundle(path: str | Path, *, device: torch.device | str | None = None) -> ModelBundle:
    """The bundle of any saved model folder (see the module docstring)."""
    model = load_model(path, device=device)
    extra = load_extra(path)
    if "bundle" in extra:
        return ModelBundle.from_info(model, extra["bundle"])
    if extra.get("format") == "statefulrnn-table/1":  # a table model saved before bundles
        t, train = extra["table"], extra.get("train", {})
        return ModelBundle(
            model,
            scaling=Scaling.from_dict(extra["scaling"]),
            loss="mse",
            features=tuple(t["features"]),
            targets=tuple(t["targets"]),
            mode=train.get("mode", "stateful"),
            window=int(train.get("window", 50)),
        )
    return ModelBundle(model)


def _fits(scale, dtype) -> bool:
    """Whether a standardizer's mean and std are finite and nonzero in `dtype` (numpy's or
    torch's floating types)."""
    info = torch.finfo(dtype) if isinstance(dtype, torch.dtype) else np.finfo(dtype)
    big = max(np.abs(scale.mean).max(), scale.std.max())
    return bool(big < float(info.max) and scale.std.min() >= float(info.tiny))


def _scale_near_overflow(scale) -> bool:
    """Outputs within a million standard deviations could overflow float64 in user units."""
    with np.errstate(over="ignore"):
        reach = np.abs(scale.mean) + 1e6 * scale.std
    return bool((~np.isfinite(reach) | (reach > np.finfo(np.float64).max / 10)).any())
