"""Streams: named, open-ended sequences served step by step, their states kept between calls.

`StreamPool` is imported on first use (`statefulrnn._lazy`), so `streams.lines` (what the
`stream` command's parser needs) does not import torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from statefulrnn._lazy import attach

_EXPORTS = {"StreamPool": "statefulrnn.streams.pool"}
__all__ = ["StreamPool"]
__getattr__, __dir__ = attach(__name__, _EXPORTS)

if TYPE_CHECKING:
    from statefulrnn.streams.pool import StreamPool
