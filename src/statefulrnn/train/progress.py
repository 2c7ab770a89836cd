"""A one-line progress bar for an epoch, quiet when output is not a terminal."""

from __future__ import annotations

import sys
import time
from typing import IO


class Progress:
    """`update(done, loss=...)` redraws `epoch 3/10 [#####.....] 120/240 chunks loss 0.01 12k steps/s`.

    Drawn only when `enabled` and the stream is a terminal; at most ten redraws a second.
    """

    def __init__(self, total: int, label: str, *, enabled: bool, stream: IO[str] | None = None):
        self.total, self.label = total, label
        self.stream = stream or sys.stderr
        self.enabled = enabled and getattr(self.stream, "isatty", lambda: False)()
        self.start = self.last_draw = time.perf_counter()

    def update(self, done: int, *, loss: float, steps: int) -> None:
        if not self.enabled:
            return
        now = time.perf_counter()
        if now - self.last_draw < 0.1 and done < self.total:
            return
        self.last_draw = now
        width = 24
        filled = int(width * done / max(self.total, 1))
        rate = steps / max(now - self.start, 1e-9)
        self.stream.write(
            f"\r{self.label} [{'#' * filled}{'.' * (width - filled)}] {done}/{self.total} chunks "
            f"loss {loss:.4g} {rate:,.0f} steps/s "
        )
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\r" + " " * 100 + "\r")
            self.stream.flush()
