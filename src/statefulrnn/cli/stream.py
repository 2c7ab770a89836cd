"""`statefulrnn stream MODEL_DIR`: serve streams line by line, one state per stream id.

Reads `{"id": ..., "x": [...]}` JSON lines or `id,x1,x2,...` CSV lines, answers each with one
JSON line, and batches the lines already waiting into as few `StreamPool.step` calls as the
ids allow (a stream's steps stay in order). `--state FILE` makes the streams outlive the
process: loaded at start, saved at the end of the input and on SIGTERM or Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import math
import os
import select
import signal
import sys
from pathlib import Path

import numpy as np

DESCRIPTION = """\
Serve a model step by step: each input line is one step of one stream (a named, open-ended
sequence), and gets one output line with the model's prediction at that step. Each stream's
state is kept between its lines, so a stream of 1,000,000 steps costs 1,000,000 steps.

input lines (stdin, or --input FILE), one step each:
  {"id": "sensor-7", "x": [0.5, 1.2]}     JSON: id (string or integer), x (F numbers)
  sensor-7,0.5,1.2                         CSV: id, then F numbers
output lines (stdout), in input order:
  {"line": 1, "id": "sensor-7", "y": [0.031]}
  {"line": 2, "error": "line 2: x has 3 values but the model takes 2 features"}

A malformed line gets an error line and the stream goes on. Lines already waiting are run
together in one batched call. The model sees x as given: scale inputs as it was trained.
With --state FILE, streams continue where they stopped: the states are loaded at start (if
FILE exists) and saved at the end of the input and on SIGTERM or Ctrl-C (exit status 0).
"""

EPILOG = """\
examples:
  tail -f readings.jsonl | statefulrnn stream models/elec --state streams.safetensors
  statefulrnn stream models/elec --input steps.csv > predictions.jsonl
  statefulrnn stream models/elec --capacity 100000 --spill-dir /var/tmp/spill
"""

READ_SIZE = 1 << 16


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "stream",
        help="serve streams step by step from JSON or CSV lines, keeping each stream's state",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", metavar="MODEL_DIR", help="a saved model folder (model.json inside)")
    p.add_argument("--input", metavar="FILE", help="read lines from FILE (default: stdin)")
    p.add_argument(
        "--format",
        choices=["auto", "json", "csv"],
        default="auto",
        help="line format; auto: a line starting with '{' is JSON, any other CSV",
    )
    p.add_argument(
        "--state",
        metavar="FILE",
        help="load stream states from FILE at start (if it exists), save them there at exit",
    )
    p.add_argument(
        "--capacity", type=int, metavar="N", help="at most N states in memory (LRU eviction)"
    )
    p.add_argument("--spill-dir", metavar="DIR", help="evicted states go here and come back")
    p.add_argument(
        "--max-batch",
        type=int,
        default=4096,
        metavar="N",
        help="at most N lines per batch (default: 4096)",
    )
    p.set_defaults(run=run)


# ----------------------------------------------------------------- parsing one line
def parse_line(text: str, fmt: str, features: int):
    """(id, x [F] float64) of one line; ValueError with the problem otherwise."""
    text = text.strip()
    if fmt == "json" or (fmt == "auto" and text.startswith("{")):
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"not valid JSON ({err.msg} at column {err.colno})") from None
        if not isinstance(obj, dict) or "id" not in obj or "x" not in obj:
            raise ValueError('expected an object with "id" and "x", e.g. {"id": "a", "x": [0.5]}')
        sid, raw = obj["id"], obj["x"]
        if isinstance(sid, bool) or not isinstance(sid, (str, int)):
            raise ValueError(f"id must be a string or an integer; received {sid!r}")
        if isinstance(raw, (int, float)) and not isinstance(raw, bool):
            raw = [raw]
        if not isinstance(raw, list):
            raise ValueError(f"x must be a list of {features} numbers; received {raw!r}")
    else:
        fields = next(csv.reader([text]))
        sid, raw = fields[0].strip(), [f.strip() for f in fields[1:]]
        if not sid:
            raise ValueError("the id (first field) is empty")
    if len(raw) != features:
        raise ValueError(
            f"x has {len(raw)} value{'s' if len(raw) != 1 else ''} but the model takes "
            f"{features} feature{'s' if features != 1 else ''}"
        )
    x = np.empty(features)
    for j, v in enumerate(raw):
        try:
            if isinstance(v, bool):
                raise ValueError
            x[j] = float(v)
        except (TypeError, ValueError):
            raise ValueError(f"x[{j}] = {v!r} is not a number") from None
        if not math.isfinite(x[j]):
            raise ValueError(f"x[{j}] = {v!r} is not finite; it would spoil the stream's state")
    return sid, x


def answer(pool, numbered: list[tuple[int, str]], fmt: str) -> list[dict]:
    """One output dict per line (a CSV header line has none): parse, then step the valid lines in rounds of distinct ids
    (round r holds each id's r-th line, so every stream's steps run in order)."""
    features = pool.model.input_size
    out: list[dict | None] = [None] * len(numbered)
    rounds: list[list[tuple[int, object, np.ndarray]]] = []
    seen: dict[object, int] = {}
    for pos, (n, text) in enumerate(numbered):
        if n == 1 and fmt != "json" and text.split(",")[0].strip().lower() == "id":
            continue  # a CSV header
        try:
            sid, x = parse_line(text, fmt, features)
        except ValueError as err:
            out[pos] = {"line": n, "error": f"line {n}: {err}"}
            continue
        r = seen.get(sid, 0)
        seen[sid] = r + 1
        if r == len(rounds):
            rounds.append([])
        rounds[r].append((pos, sid, x))
    size = pool.capacity or len(numbered)  # one call may not step more streams than that
    for items in rounds:
        for lo in range(0, len(items), size):
            part = items[lo : lo + size]
            y = pool.step([sid for _, sid, _ in part], np.stack([x for _, _, x in part])[:, None])
            for (pos, sid, _), yi in zip(part, y[:, 0].tolist()):
                out[pos] = {"line": numbered[pos][0], "id": sid, "y": yi}
    return [o for o in out if o is not None]


# ----------------------------------------------------------------- reading what is waiting
class Lines:
    """Numbered lines from a file descriptor, in batches of the lines already waiting.

    Blocks only when nothing is waiting; returns early (None) when `wake` gets a byte (a
    signal arrived). Blank lines are counted, not returned.
    """

    def __init__(self, fd: int, wake: int, max_batch: int):
        self.fd, self.wake, self.max_batch = fd, wake, max_batch
        self.pending, self.number, self.eof = b"", 0, False

    def _ready(self, timeout: float | None) -> bool:
        readable, _, _ = select.select([self.fd, self.wake], [], [], timeout)
        if self.wake in readable:
            return False
        return self.fd in readable

    def _read(self) -> None:
        data = os.read(self.fd, READ_SIZE)
        if data:
            self.pending += data
        else:
            self.eof = True

    def batch(self) -> list[tuple[int, str]] | None:
        """The next lines (at least one), or None at the end of input or on a signal."""
        while True:
            lines = self._take()
            while len(lines) < self.max_batch and not self.eof and self._ready(0):
                self._read()  # more is already waiting: take it into this batch
                lines += self._take(self.max_batch - len(lines))
            if lines:
                return lines
            if self.eof:
                if self.pending.strip():  # a last line without a newline
                    tail, self.pending = self.pending, b""
                    self.number += 1
                    return [(self.number, tail.decode("utf-8", "replace"))]
                return None
            if not self._ready(None):
                return None
            self._read()

    def _take(self, limit: int | None = None) -> list[tuple[int, str]]:
        limit = self.max_batch if limit is None else limit
        out = []
        while len(out) < limit:
            cut = self.pending.find(b"\n")
            if cut < 0:
                break
            raw, self.pending = self.pending[:cut], self.pending[cut + 1 :]
            self.number += 1
            if raw.strip():
                out.append((self.number, raw.decode("utf-8", "replace")))
        return out


# ----------------------------------------------------------------- the command
def run(args) -> int:
    from statefulrnn.model import load_model
    from statefulrnn.streams import StreamPool

    if args.max_batch < 1:
        print("stream: --max-batch must be >= 1", file=sys.stderr)
        return 2
    try:
        model = load_model(args.model)
        if args.state and Path(args.state).exists():
            kw = {} if args.capacity is None else {"capacity": args.capacity}
            pool = StreamPool.load(args.state, model, spill_dir=args.spill_dir, **kw)
            restored = f", {len(pool)} streams restored from {args.state}"
        else:
            pool = StreamPool(model, capacity=args.capacity, spill_dir=args.spill_dir)
            restored = ""
        source = open(args.input, "rb") if args.input else None  # noqa: SIM115
    except (OSError, ValueError, TypeError) as err:
        print(f"stream: {err}", file=sys.stderr)
        return 2
    fd = source.fileno() if source is not None else sys.stdin.fileno()
    print(
        f"stream: {model.kind} ({model.input_size} in, {model.output_size} out) from "
        f"{args.model}{restored}; reading {args.input or 'stdin'}",
        file=sys.stderr,
        flush=True,
    )
    wake_r, wake_w = os.pipe()
    stop = {"signal": None}

    def on_signal(signum, frame):
        stop["signal"] = signum
        os.write(wake_w, b"!")  # wakes the select() that waits for input

    previous = {}
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(ValueError):  # not the main thread: no signal handling
            previous[sig] = signal.signal(sig, on_signal)
    lines_in = errors = 0
    try:
        reader = Lines(fd, wake_r, args.max_batch)
        while stop["signal"] is None:
            batch = reader.batch()
            if batch is None:
                break
            out = answer(pool, batch, args.format)
            lines_in += len(out)
            errors += sum("error" in o for o in out)
            sys.stdout.write("".join(json.dumps(o) + "\n" for o in out))
            sys.stdout.flush()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        os.close(wake_r)
        os.close(wake_w)
        if source is not None:
            source.close()
        if args.state:
            pool.save(args.state)  # every answered line is in the saved states
    how = "stopped by signal" if stop["signal"] is not None else "end of input"
    saved = f"; {len(pool)} streams saved to {args.state}" if args.state else ""
    print(f"stream: {how}: {lines_in} lines, {errors} errors{saved}", file=sys.stderr)
    return 0
