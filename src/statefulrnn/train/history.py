"""History: one dict per epoch (a list, as skorch keeps it), printable and saved as JSON."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from statefulrnn import records


class History(list):
    """Per-epoch records: `epoch`, `loss`, `val_loss`, ..., `seconds`, `scored_steps`."""

    def column(self, key: str) -> list[Any]:
        return [row.get(key) for row in self]

    @property
    def last(self) -> dict[str, Any]:
        return self[-1] if self else {}

    def best(self, key: str = "val_loss", mode: str = "min") -> dict[str, Any] | None:
        rows = [r for r in self if isinstance(r.get(key), (int, float)) and math.isfinite(r[key])]
        if not rows:
            return None
        return (min if mode == "min" else max)(rows, key=lambda r: r[key])

    def to_json(self) -> str:
        return records.dumps(list(self))

    def save(self, path: str | Path) -> None:
        records.atomic_write_json(path, list(self))

    @classmethod
    def load(cls, path: str | Path) -> History:
        return cls(records.read_json(path))

    def table(self) -> str:
        """A fixed-width table of every epoch, columns in first-seen order."""
        if not self:
            return "(no epochs)"
        keys: list[str] = []
        for row in self:
            keys += [k for k in row if k not in keys]
        cells = [[_fmt(row.get(k)) for k in keys] for row in self]
        widths = [max(len(k), *(len(c[i]) for c in cells)) for i, k in enumerate(keys)]
        lines = ["  ".join(k.rjust(w) for k, w in zip(keys, widths))]
        lines += ["  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in cells]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 1e5 else f"{v:.3e}"
    return str(v)
