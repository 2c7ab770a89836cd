"""Streams: named, open-ended sequences served step by step, their states kept between calls."""

from statefulrnn.streams.pool import StreamPool

__all__ = ["StreamPool"]
