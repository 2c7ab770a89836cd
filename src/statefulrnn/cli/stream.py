"""`statefulrnn stream MODEL_DIR`: serve streams line by line, one state per stream id.

Reads `{"id": ..., "x": [...]}` JSON lines or `id,x1,x2,...` CSV lines, answers each with one
JSON line, and batches the lines already waiting into as few `StreamPool.step` calls as the
ids allow (a stream's steps stay in order). `--state FILE` makes the streams outlive the
process: a StreamService over an SQLite store (streams/durable.py) commits each batch's states
before its answers are written, so a kill -9 loses no answered line.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys

from statefulrnn.cli import options as o
from statefulrnn.streams.lines import (
    DEFAULT_LIMITS,
    LineError,
    LineLimits,
    LineReader,
    is_csv_header,
    parse_line,
)

# its line in `statefulrnn --help`
HELP = "serve streams step by step from JSON or CSV lines, keeping each stream's state"
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

A malformed line gets an error line and the stream goes on; no line can stop the process.
Limits per line: at most --max-line-bytes (default 1 MiB; a longer line is skipped as it
arrives), numbers of at most 64 characters, JSON nested at most 8 deep, ids of at most 1024
characters; NaN and inf are refused (they would spoil a stream's state). Lines already
waiting are run together in one batched call. x and y are in your units, as `statefulrnn
predict` reads and writes them: x is scaled as in training, y is scaled back (a bce model
answers probabilities, a ce model one probability per class). A model saved without
scaling sees x as given.
With --state FILE, streams continue where they stopped, even after kill -9 or a power cut:
every batch's new states are committed to FILE (an SQLite database, locked to one process)
before its answers are written. A JSON line may carry "seq" (an integer increasing per
stream): a line resent after a crash with a seq already applied gets the stored answer,
marked "replayed": true, and is not applied twice.
"""

EPILOG = """\
examples:
  tail -f readings.jsonl | statefulrnn stream models/elec --state streams.db
  statefulrnn stream models/elec --input steps.csv > predictions.jsonl
  statefulrnn stream models/elec --state streams.db --capacity 100000
  statefulrnn stream models/elec --capacity 100000 --spill-dir /var/tmp/spill
"""


def add_parser(subparsers) -> None:
    p = o.add_command(subparsers, "stream", HELP, DESCRIPTION, EPILOG)
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
        help="a stream state database (SQLite; created if missing): every answered line's "
        "state is committed there before the answer is written",
    )
    p.add_argument(
        "--sync",
        choices=["full", "normal"],
        default="full",
        help="--state durability: full (default) survives power loss; normal survives kill -9 "
        "and is cheaper per commit",
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
    p.add_argument(
        "--max-line-bytes",
        type=int,
        default=DEFAULT_LIMITS.max_line_bytes,
        metavar="N",
        help=f"longest input line; longer ones get an error line (default: {DEFAULT_LIMITS.max_line_bytes})",
    )
    o.add_threads(p)
    p.set_defaults(run=run)


# ----------------------------------------------------------------- answering lines
def answer(
    service,
    numbered: list[tuple[int, str | LineError]],
    fmt: str,
    limits: LineLimits = DEFAULT_LIMITS,
) -> list[dict]:
    """One output dict per line (a CSV header line has none).

    Parse each line (an item may already be a LineError from the reader), then step the valid
    ones through the service in one micro-batch: a stream's steps stay in order, a bad line
    changes no stream's state, and with a store every answer is durable before it is returned.
    `service`: a StreamService, or a StreamPool (then nothing is durable).
    """
    from statefulrnn.streams import StreamPool
    from statefulrnn.streams.service import StepRequest, StreamService

    if isinstance(service, StreamPool):
        service = StreamService(service)
    features = service.features
    out: list[dict | None] = [None] * len(numbered)
    requests, where = [], []
    for pos, (n, text) in enumerate(numbered):
        if n == 1 and fmt != "json" and isinstance(text, str) and is_csv_header(text):
            continue  # a CSV header
        try:
            if isinstance(text, LineError):
                raise text
            sid, x = parse_line(text, fmt, features, limits)
            seq = line_seq(text)
        except ValueError as err:
            out[pos] = {"line": n, "error": f"line {n}: {err}"}
            continue
        requests.append(StepRequest(sid, x[None], seq=seq))
        where.append(pos)
    for pos, req, res in zip(where, requests, service.step(requests)):
        n = numbered[pos][0]
        if res.error is not None:
            out[pos] = {"line": n, "error": f"line {n}: {res.error}"}
        else:
            answer = {"line": n, "id": req.sid, "y": res.y[0].tolist()}
            if res.replayed:
                answer["replayed"] = True
            out[pos] = answer
    return [o for o in out if o is not None]


def line_seq(text: str) -> int | None:
    """The optional "seq" of a JSON line (parse_line has checked it is bounded JSON): a line
    resent with a seq already applied is answered again, not applied twice."""
    if '"seq"' not in text or not text.lstrip().startswith("{"):
        return None
    seq = json.loads(text).get("seq")
    if seq is not None and (isinstance(seq, bool) or not isinstance(seq, int) or seq < 0):
        raise ValueError(f"seq must be an integer >= 0; received {seq!r}")
    return seq


# ----------------------------------------------------------------- the command
def run(args) -> int:
    from statefulrnn.bundle import load_bundle
    from statefulrnn.streams import StreamPool
    from statefulrnn.streams.durable import SQLiteStore
    from statefulrnn.streams.service import StreamService

    if args.max_batch < 1:
        print("stream: --max-batch must be >= 1", file=sys.stderr)
        return 2
    if args.max_line_bytes < 1:
        print("stream: --max-line-bytes must be >= 1", file=sys.stderr)
        return 2
    limits = LineLimits(max_line_bytes=args.max_line_bytes)
    if args.state and args.spill_dir:
        print(
            "stream: --spill-dir is for runs without --state; the --state database already "
            "keeps the streams that --capacity evicts from memory",
            file=sys.stderr,
        )
        return 2
    if args.capacity is not None and not (args.state or args.spill_dir):
        print(
            "stream: --capacity evicts streams from memory; give --state FILE (or --spill-dir "
            "DIR) to keep them, otherwise evicted streams would be forgotten",
            file=sys.stderr,
        )
        return 2
    store = None
    try:
        bundle = load_bundle(args.model)  # the model and its units (scaling, output link)
        model = bundle.model
        if args.state:
            store = SQLiteStore(args.state, synchronous=args.sync)
        pool = StreamPool(bundle, capacity=args.capacity, spill_dir=args.spill_dir)
        service = StreamService(pool, store)
        restored = f", {len(service)} streams in {args.state}" if store is not None else ""
        source = open(args.input, "rb") if args.input else None  # noqa: SIM115
    except (OSError, ValueError, TypeError) as err:
        if store is not None:
            store.close()
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
    stop: dict[str, int | str | None] = {"signal": None}

    def on_signal(signum, frame):
        stop["signal"] = signum
        os.write(wake_w, b"!")  # wakes the select() that waits for input

    previous = {}
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(ValueError):  # not the main thread: no signal handling
            previous[sig] = signal.signal(sig, on_signal)
    lines_in = errors = 0
    try:
        reader = LineReader(fd, wake_r, args.max_batch, limits)
        while stop["signal"] is None:
            batch = reader.batch()
            if batch is None:
                break
            out = answer(service, batch, args.format, limits)
            lines_in += len(out)
            errors += sum("error" in o for o in out)
            try:
                sys.stdout.write("".join(json.dumps(o) + "\n" for o in out))
                sys.stdout.flush()
            except BrokenPipeError:  # the reader went away (`| head`): stop, save, no traceback
                from statefulrnn.cli.options import stdout_gone

                stdout_gone()
                stop["signal"] = "closed output"
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        os.close(wake_r)
        os.close(wake_w)
        if source is not None:
            source.close()
        held = len(service) if args.state else 0
        service.close()  # every answered line was committed before it was answered
        pool.close()
    endings: dict[int | str | None, str] = {None: "end of input", "closed output": "output closed"}
    how = endings.get(stop["signal"], "stopped by signal")
    saved = f"; {held} streams in {args.state}" if args.state else ""
    print(f"stream: {how}: {lines_in} lines, {errors} errors{saved}", file=sys.stderr)
    return 0
