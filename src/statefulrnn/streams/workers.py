"""`serve --workers N`: N server processes on one port, one state store.

Why processes: one serve process runs its event loop, every request's parsing and the
micro-batch under one GIL, so it uses one core (docs/serve.md: ~12,600 one-step requests/s on
this 2-core machine, one core busy, the other mostly idle). N processes use N cores.

    supervisor (this module; no torch)           worker k (cli/serve.py, `--workers` unset)
      holds HOST:PORT (SO_REUSEPORT)               listens on HOST:PORT too (SO_REUSEPORT:
                                                   the kernel spreads connections over them)
      holds the store open (SQLite: shared lock)   its own StreamPool and StreamService over
      starts N workers, restarts one that dies     the shared store (SQLite shared / Redis)
      SIGINT/SIGTERM: stops them, waits            dies with the supervisor (PR_SET_PDEATHSIG)

Correctness is the store's, as with replicas: a worker is not `exclusive`, so each micro-batch
re-reads the versions of its streams and reloads those another worker advanced, and commits
are versioned, so two workers never both advance one stream. A client that keeps its
connection stays on one worker (its stream's state stays cached there); one that reconnects may
land on another, which reloads the state from the store.

A worker that exits with status 2 could not start (a bad option, a store of another model):
the supervisor stops the others and exits 2 with that message on stderr. Any other exit is a
crash: the worker is started again (at most MAX_RESTARTS in RESTART_WINDOW_S, then everything
stops with status 1). A SIGKILL of the supervisor kills the workers (the kernel sends them
SIGKILL), which is what a crash of a one-process serve does: acknowledged steps are in the store.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from statefulrnn.streams.metrics import MULTIPROCESS_ENV

log = logging.getLogger("statefulrnn.serve")

ENV = "STATEFULRNN_SERVE_WORKER"  # JSON: {"ready", "go", "index", "parent", "args"}
LISTEN_BACKLOG = 2048
STOP_TIMEOUT_S = 30.0
MAX_RESTARTS = 5
RESTART_WINDOW_S = 60.0
POLL_S = 0.2
PR_SET_PDEATHSIG = 1


def listen(host: str, port: int, *, backlog: int | None = LISTEN_BACKLOG) -> socket.socket:
    """A socket on host:port with SO_REUSEPORT, listening unless `backlog` is None.

    Each worker listens on a socket of its own: the kernel then spreads new connections
    evenly over them. One socket shared by all (inherited) let the worker that woke first
    accept most of 1,000 connections arriving together, so two workers served no more than
    one (measured: docs/serve.md). The supervisor binds one too, without listening: it holds
    the port (and picks it, for port 0) while workers restart."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        if backlog is not None:
            sock.listen(backlog)
    except OSError as err:
        sock.close()
        raise OSError(f"cannot listen on {host}:{port}: {err.strerror}") from None
    return sock


def worker_command() -> list[str]:
    """The command line of a worker: this package's serve module, run as a script."""
    return [sys.executable, "-m", "statefulrnn.cli.serve"]


@dataclass
class Worker:
    """A started worker and the supervisor's ends of its two pipes."""

    proc: subprocess.Popen
    ready: int | None  # read: one byte once its model and store are open (EOF: it died)
    go: int | None  # write: one byte lets it listen (None: it listens at once)

    def wait_ready(self) -> bool:
        """Whether it opened its model and store (False: it exited first)."""
        if self.ready is None:
            return True
        try:
            return os.read(self.ready, 1) == b"1"
        finally:
            os.close(self.ready)
            self.ready = None

    def release(self) -> None:
        """Let it listen."""
        if self.go is not None:
            with contextlib.suppress(BrokenPipeError):
                os.write(self.go, b"1")
            os.close(self.go)
            self.go = None


def start_worker(index: int, args: dict[str, Any], *, hold: bool, metrics: str) -> Worker:
    """Worker `index` with the serve options `args` (JSON-able; its port is the supervisor's).
    `hold`: it reports when ready and waits for `release()` before it listens (a restarted
    worker does neither). `metrics`: the folder where the workers keep their Prometheus values
    (streams/metrics.py)."""
    ready_r, ready_w = os.pipe() if hold else (None, None)
    go_r, go_w = os.pipe() if hold else (None, None)
    spec = {"ready": ready_w, "go": go_r, "index": index, "parent": os.getpid(), "args": args}
    passed = [fd for fd in (ready_w, go_r) if fd is not None]
    try:
        proc = subprocess.Popen(
            worker_command(),
            pass_fds=passed,
            env={**os.environ, ENV: json.dumps(spec), MULTIPROCESS_ENV: metrics},
        )
    finally:
        for fd in passed:
            os.close(fd)
    return Worker(proc, ready_r, go_w)


def supervise(port_holder: socket.socket, workers: int, args: dict[str, Any]) -> int:
    """Run `workers` workers until SIGINT/SIGTERM (0), a worker that cannot start (2), or
    crashes beyond the restart budget (1).

    Worker 0 opens the model and store first and alone, so a bad option or store is reported
    once (its stderr) and a new SQLite store is created by one process; then the others open
    theirs, and only when all have, all start listening: connections that arrive early (and
    keep-alive ones stay where they land) are then spread over every worker, not the first."""
    stopping: list[int] = []

    def on_signal(signum, frame) -> None:
        stopping.append(signum)

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    started: list[Worker] = []
    metrics = metrics_folder()
    try:
        started.append(start_worker(0, args, hold=True, metrics=metrics))
        if not started[0].wait_ready():
            return 2
        started += [start_worker(k, args, hold=True, metrics=metrics) for k in range(1, workers)]
        if not all(w.wait_ready() for w in started):
            return 2
        for w in started:
            w.release()
        log.info("workers started", extra={"fields": {"workers": [w.proc.pid for w in started]}})
        restarts: deque[float] = deque()
        while not stopping:
            time.sleep(POLL_S)
            for k, w in enumerate(started):
                rc = w.proc.poll()
                if rc is None or stopping:
                    continue
                if rc == 2:
                    log.error("worker could not start", extra={"fields": {"worker": k}})
                    return 2
                now = time.monotonic()
                while restarts and now - restarts[0] > RESTART_WINDOW_S:
                    restarts.popleft()
                if len(restarts) >= MAX_RESTARTS:
                    log.error(
                        "workers keep crashing; stopping",
                        extra={"fields": {"worker": k, "status": rc, "restarts": len(restarts)}},
                    )
                    return 1
                restarts.append(now)
                log.warning(
                    "worker crashed; restarting", extra={"fields": {"worker": k, "status": rc}}
                )
                forget_metrics(metrics, w.proc.pid)
                started[k] = start_worker(k, args, hold=False, metrics=metrics)
        return 0
    finally:
        for w in started:
            w.release()  # a worker still waiting to listen sees the byte, then SIGTERM
        stop([w.proc for w in started])
        for s, handler in previous.items():
            signal.signal(s, handler)
        port_holder.close()
        shutil.rmtree(metrics, ignore_errors=True)


METRICS_PREFIX = "statefulrnn-metrics-"


def metrics_folder(parent: str | None = None) -> str:
    """A new folder for the workers' Prometheus values, named by this supervisor's pid; the
    folders of supervisors that died without removing theirs (kill -9) are removed first."""
    parent = parent or tempfile.gettempdir()
    for entry in os.scandir(parent):
        pid = entry.name[len(METRICS_PREFIX) :].split("-", 1)[0]
        if entry.name.startswith(METRICS_PREFIX) and entry.is_dir() and pid.isdigit():
            try:
                os.kill(int(pid), 0)
            except ProcessLookupError:
                shutil.rmtree(entry.path, ignore_errors=True)
            except PermissionError:  # alive, someone else's
                pass
    return tempfile.mkdtemp(prefix=f"{METRICS_PREFIX}{os.getpid()}-", dir=parent)


def forget_metrics(folder: str, pid: int) -> None:
    """A dead worker's live gauges (streams held) leave the sums; its counters stay."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid, folder)


def stop(procs: list[subprocess.Popen]) -> None:
    """SIGTERM every worker (each finishes its batch and closes its store), then wait."""
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    for proc in procs:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def worker_setup() -> dict[str, Any] | None:
    """In a worker: its {"ready", "go", "index", "args"} (None when this process is not one).
    Dies with the supervisor: on Linux the kernel SIGKILLs it when the supervisor exits by any
    means."""
    spec = os.environ.pop(ENV, None)
    if spec is None:
        return None
    info = json.loads(spec)
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != info["parent"]:  # the supervisor died before prctl took effect
        os._exit(1)
    return info


def worker_ready(info: dict[str, Any]) -> None:
    """In a worker whose model and store are open: tell the supervisor, and wait until it says
    to listen (it releases every worker at once); a restarted worker has no pipes and goes on.
    Exits if the supervisor is gone."""
    if info["ready"] is not None:
        try:
            os.write(info["ready"], b"1")
        except BrokenPipeError:  # the supervisor died
            os._exit(1)
        finally:
            os.close(info["ready"])
    if info["go"] is not None:
        go = os.read(info["go"], 1)
        os.close(info["go"])
        if go != b"1":  # EOF: the supervisor died
            os._exit(1)
