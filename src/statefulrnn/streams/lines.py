"""Stream input lines: read them with a bound, parse them so that no line can crash the reader.

A stream server reads lines from a peer it does not control. Every line either parses into
`(id, x [F] float64)` or raises `LineError` with a one-line reason; nothing else escapes.
The limits (`LineLimits`) bound what one line may cost:

    max_line_bytes    a longer line is skipped as it arrives (never held whole) and answered
                      with an error; the lines after it are read as usual
    max_number_chars  a number longer than this is refused before Python converts it
                      (a 401-digit integer would overflow float(); a 5,000-digit one
                      would hit int()'s digit limit)
    max_depth         JSON nested deeper is refused before json.loads recurses into it
    max_id_chars      a stream id longer than this is refused (ids are kept in memory)

NaN and ±inf are refused in JSON (`NaN`, `Infinity`) and in CSV (`nan`, `inf`): one of them
would spoil a stream's state for good. Knows bytes, text and the number of features; knows
nothing about models or pools.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import select
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # numpy is imported on use: `statefulrnn stream --help` reads this module
    import numpy as np

READ_SIZE = 1 << 16

# a plain decimal number: what CSV cells may hold (float() would also take "1_0", "nan", "inf")
NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
BRACKET = re.compile(r"[\[\]{}]")


class LineError(ValueError):
    """One input line is malformed; the message says why (without the line number)."""


@dataclass(frozen=True)
class LineLimits:
    """What one input line may cost; see the module docstring."""

    max_line_bytes: int = 1 << 20
    max_number_chars: int = 64
    max_depth: int = 8
    max_id_chars: int = 1024

    def __post_init__(self) -> None:
        for name in ("max_line_bytes", "max_number_chars", "max_depth", "max_id_chars"):
            if getattr(self, name) < 1:
                raise ValueError(f"LineLimits.{name} must be >= 1; received {getattr(self, name)}")


DEFAULT_LIMITS = LineLimits()


# ----------------------------------------------------------------- parsing one line
def is_csv_header(text: str) -> bool:
    """True for a CSV header line (`id,x1,x2,...`): its first field is `id`."""
    return text.split(",", 1)[0].strip().strip('"').lower() == "id"


def parse_line(
    text: str, fmt: str, features: int, limits: LineLimits = DEFAULT_LIMITS
) -> tuple[str | int, np.ndarray]:
    """(id, x [F] float64) of one line; LineError with the problem otherwise.

    fmt: "json", "csv" or "auto" (a line starting with '{' is JSON, any other CSV).
    """
    import numpy as np

    text = text.strip()
    if len(text.encode("utf-8", "surrogatepass")) > limits.max_line_bytes:
        raise LineError(f"the line is longer than {limits.max_line_bytes} bytes")
    if fmt == "json" or (fmt == "auto" and text.startswith("{")):
        sid, raw = _parse_json(text, features, limits)
    else:
        sid, raw = _parse_csv(text, limits)
    if isinstance(sid, str) and len(sid) > limits.max_id_chars:
        raise LineError(f"the id has {len(sid)} characters; at most {limits.max_id_chars}")
    if len(raw) != features:
        raise LineError(
            f"x has {len(raw)} value{'s' if len(raw) != 1 else ''} but the model takes "
            f"{features} feature{'s' if features != 1 else ''}"
        )
    x = np.empty(features)
    for j, v in enumerate(raw):
        x[j] = _number(j, v, limits)
    return sid, x


def _parse_json(text: str, features: int, limits: LineLimits):
    _check_depth(text, limits.max_depth)

    def number_hook(kind):
        def parse(s: str):
            if len(s) > limits.max_number_chars:
                raise LineError(
                    f"a number with {len(s)} characters; numbers are at most "
                    f"{limits.max_number_chars}"
                )
            return kind(s)

        return parse

    def constant(name: str):
        raise LineError(f"{name} is not a finite number; it would spoil the stream's state")

    try:
        obj = json.loads(
            text,
            parse_int=number_hook(int),
            parse_float=number_hook(float),
            parse_constant=constant,
        )
    except json.JSONDecodeError as err:
        raise LineError(f"not valid JSON ({err.msg} at column {err.colno})") from None
    except RecursionError:  # _check_depth should have stopped it; never let it escape
        raise LineError(f"JSON nested deeper than {limits.max_depth} levels") from None
    if not isinstance(obj, dict) or "id" not in obj or "x" not in obj:
        raise LineError('expected an object with "id" and "x", e.g. {"id": "a", "x": [0.5]}')
    sid, raw = obj["id"], obj["x"]
    if isinstance(sid, bool) or not isinstance(sid, (str, int)):
        raise LineError(f"id must be a string or an integer; received {_short(sid)}")
    if isinstance(raw, (int, float)) and not isinstance(raw, bool):
        raw = [raw]
    if not isinstance(raw, list):
        raise LineError(f"x must be a list of {features} numbers; received {_short(raw)}")
    return sid, raw


def _check_depth(text: str, max_depth: int) -> None:
    """Refuse JSON nested deeper than max_depth, counting brackets outside strings."""
    if text.count("[") + text.count("{") <= max_depth:
        return  # cannot be deeper than the number of openers
    depth = 0
    for b in BRACKET.findall(JSON_STRING.sub("", text)):
        depth += 1 if b in "[{" else -1
        if depth > max_depth:
            raise LineError(f"JSON nested deeper than {max_depth} levels")


def _parse_csv(text: str, limits: LineLimits):
    try:
        fields = next(csv.reader([text]), None) or [""]
    except csv.Error as err:
        raise LineError(f"not a valid CSV line ({err})") from None
    sid, raw = fields[0].strip(), [f.strip() for f in fields[1:]]
    if not sid:
        raise LineError("the id (first field) is empty")
    return sid, raw


def _number(j: int, v, limits: LineLimits) -> float:
    """x[j] as a finite float; LineError naming it otherwise."""
    if isinstance(v, str):
        if len(v) > limits.max_number_chars:
            raise LineError(
                f"x[{j}] has {len(v)} characters; numbers are at most {limits.max_number_chars}"
            )
        if not NUMBER.fullmatch(v):
            if v.lower().lstrip("+-") in ("nan", "inf", "infinity"):
                raise LineError(f"x[{j}] = {v!r} is not finite; it would spoil the stream's state")
            raise LineError(f"x[{j}] = {_short(v)} is not a number")
    elif isinstance(v, bool) or not isinstance(v, (int, float)):
        raise LineError(f"x[{j}] = {_short(v)} is not a number")
    try:
        value = float(v)
    except OverflowError:  # an int past float's range
        value = math.inf
    if not math.isfinite(value):
        raise LineError(f"x[{j}] = {_short(v)} is not finite; it would spoil the stream's state")
    return value


def _short(v, limit: int = 60) -> str:
    """repr(v), cut to `limit` characters: error lines stay short whatever the input."""
    if isinstance(v, (list, dict)) and len(v) > 20:
        return f"a {type(v).__name__} of {len(v)} items"
    r = repr(v)
    return r if len(r) <= limit else r[: limit - 3] + "..."


# ----------------------------------------------------------------- reading what is waiting
class LineReader:
    """Numbered lines from a file descriptor, in batches of the lines already waiting.

    Each item is `(number, text)`, or `(number, LineError)` for a line longer than
    `limits.max_line_bytes` or not valid UTF-8. A too-long line is dropped as its bytes arrive,
    so memory holds at most max_line_bytes of a line plus one read (64 KiB) and max_batch lines
    waiting. Blocks only when nothing is waiting; returns early (None) when `wake` gets a byte
    (a signal arrived). Blank lines are counted, not returned.
    """

    def __init__(
        self,
        fd: int,
        wake: int | None = None,
        max_batch: int = 4096,
        limits: LineLimits = DEFAULT_LIMITS,
    ):
        self.fd, self.wake, self.max_batch, self.limits = fd, wake, max_batch, limits
        self.ready: deque[tuple[int, str | LineError]] = deque()  # complete lines, in order
        self.partial = bytearray()  # the line still arriving
        self.skipping = False  # the line still arriving is too long: its bytes are dropped
        self.number = 0
        self.eof = False

    def batch(self) -> list[tuple[int, str | LineError]] | None:
        """The next lines (at least one), or None at the end of input or on a signal."""
        while True:
            while len(self.ready) < self.max_batch and not self.eof and self._waiting(0):
                self._read()  # more is already waiting: take it into this batch
            if self.ready:
                n = min(self.max_batch, len(self.ready))
                return [self.ready.popleft() for _ in range(n)]
            if self.eof:
                self._end_line()  # a last line without a newline
                return [self.ready.popleft()] if self.ready else None
            if not self._waiting(None):
                return None
            self._read()

    def _waiting(self, timeout: float | None) -> bool:
        fds = [self.fd] if self.wake is None else [self.fd, self.wake]
        readable, _, _ = select.select(fds, [], [], timeout)
        if self.wake is not None and self.wake in readable:
            return False
        return self.fd in readable

    def _read(self) -> None:
        data = os.read(self.fd, READ_SIZE)
        if not data:
            self.eof = True
            return
        start = 0
        while (cut := data.find(b"\n", start)) >= 0:
            self._grow(data[start:cut])
            self._end_line()
            start = cut + 1
        self._grow(data[start:])

    def _grow(self, piece: bytes) -> None:
        if self.skipping:
            return
        self.partial += piece
        if len(self.partial) > self.limits.max_line_bytes:
            self.partial = bytearray()
            self.skipping = True

    def _end_line(self) -> None:
        if self.skipping:
            self.number += 1
            self.ready.append((self.number, self._too_long()))
        elif self.partial or not self.eof:
            self.number += 1
            if self.partial.strip():
                self.ready.append((self.number, self._decode(bytes(self.partial))))
        self.partial = bytearray()
        self.skipping = False

    def _decode(self, raw: bytes) -> str | LineError:
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as err:
            return LineError(f"not valid UTF-8 (byte {err.start + 1})")

    def _too_long(self) -> LineError:
        return LineError(f"the line is longer than {self.limits.max_line_bytes} bytes; skipped")
