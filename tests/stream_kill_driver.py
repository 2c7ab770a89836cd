"""Drive `statefulrnn stream --state` through random SIGKILLs (run by test_stream_durable.py).

    python stream_kill_driver.py MODEL_DIR STATE LINES_FILE SEED KILLS  ->  JSON on stdout

Imports torch once, then forks each `stream` process (a fresh interpreter per restart would
spend seconds importing torch). Each process gets the unacknowledged lines in small random
chunks and is killed with SIGKILL at a random moment; what it wrote before dying counts as
acknowledged. The next process gets every line from the first unacknowledged one again (their
"seq" numbers make an already-applied line answer from the store instead of stepping twice).
Prints {"answers": [[line index, y, replayed], ...], "kills": n, "processes": n}.
"""

from __future__ import annotations

import json
import os
import random
import select
import signal
import sys
import time
from pathlib import Path

import torch  # noqa: F401  (imported once here; the forked children inherit it)

from statefulrnn.cli import main
from statefulrnn.streams.service import StreamService  # noqa: F401


def child(model_dir: str, state: str, in_r: int, out_w: int) -> None:
    os.dup2(in_r, 0)
    os.dup2(out_w, 1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    torch.set_num_threads(1)
    code = 1
    try:
        code = main(["stream", model_dir, "--state", state])
    finally:
        sys.stdout.flush()
        os._exit(code)


def read_answers(out_r: int, buf: bytes, timeout: float) -> tuple[list[dict], bytes, bool]:
    """Complete answer lines: wait up to `timeout` for data, then take what is waiting
    (and say whether the pipe closed: the process is gone)."""
    closed = False
    wait = timeout
    while True:
        ready, _, _ = select.select([out_r], [], [], wait)
        if not ready:
            break
        data = os.read(out_r, 1 << 16)
        if not data:
            closed = True
            break
        buf += data
        wait = 0
    *lines, buf = buf.split(b"\n")
    return [json.loads(s) for s in lines if s.strip()], buf, closed


def drain(out_r: int, buf: bytes) -> tuple[list[dict], bytes]:
    """Everything a killed process wrote (its pipe closes when it is gone)."""
    got = []
    while True:
        more, buf, closed = read_answers(out_r, buf, 10.0)
        got += more
        if closed:
            return got, buf


def main_driver() -> None:
    model_dir, state, lines_file, seed, kills = sys.argv[1:6]
    lines = Path(lines_file).read_text().splitlines()
    rng = random.Random(int(seed))
    kills = int(kills)
    answers: list[list] = []
    acked = 0  # lines [0, acked) are acknowledged
    processes = done_kills = 0
    while acked < len(lines):
        in_r, in_w = os.pipe()
        out_r, out_w = os.pipe()
        sys.stdout.flush()
        pid = os.fork()
        if pid == 0:
            os.close(in_w)
            os.close(out_r)
            child(model_dir, state, in_r, out_w)
        os.close(in_r)
        os.close(out_w)
        processes += 1
        last = done_kills >= kills
        sent = acked
        buf = b""
        # this process may answer at most `budget` more lines before it is killed
        left = len(lines) - acked
        budget = rng.randint(0, max(0, min(left - 1, 2 * left // (kills - done_kills + 1))))
        budget = len(lines) if last else budget
        base = acked
        # a process to be killed never gets the last line, so it cannot finish the input
        # before its kill and every planned kill happens
        limit = len(lines) if last else len(lines) - 1
        while acked < len(lines):
            if sent < limit and sent - acked < 8:
                n = rng.randint(1, 4)
                chunk = "".join(s + "\n" for s in lines[sent : min(sent + n, limit)])
                os.write(in_w, chunk.encode())
                sent += len(lines[sent : min(sent + n, limit)])
            if not last and acked - base >= budget:
                time.sleep(rng.random() * 0.004)  # somewhere in the next batch's work
                os.kill(pid, signal.SIGKILL)
                break
            got, buf, closed = read_answers(out_r, buf, 0.001 if sent < limit else 5.0)
            for o in got:
                answers.append([acked, o.get("y"), bool(o.get("replayed")), o.get("error")])
                acked += 1
            if closed:
                break
        os.close(in_w)
        if not last:
            # whatever the process wrote before it died is acknowledged too
            got, buf = drain(out_r, buf)
            for o in got:
                answers.append([acked, o.get("y"), bool(o.get("replayed")), o.get("error")])
                acked += 1
            done_kills += 1
        os.waitpid(pid, 0)
        os.close(out_r)
    print(json.dumps({"answers": answers, "kills": done_kills, "processes": processes}))


if __name__ == "__main__":
    main_driver()
