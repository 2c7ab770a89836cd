"""Load generator for `statefulrnn serve`: throughput and latency on loopback, LSTM(64), 1 in, 1 out.

    .venv/bin/python benchmarks/bench_serve.py [--seconds 5] [--streams 1000] [--clients 2]
        [--quick] [--no-redis] [--sync-normal] [--server uvicorn,granian] [--workers 1,2]
        [--out benchmarks/results/serve.json]

Starts `statefulrnn serve` (a real process; `--server`: uvicorn, the default, and/or granian) with the embedded store (SQLite, FULL
sync) and, if redis-server is installed, with a Redis store (a redis-server of its own, no
persistence) (and with --sync-normal, SQLite without an fsync per commit); for each it runs these closed loads, each measured over --seconds after a
1 s warm-up, by --clients client processes (benchmarks/serve_client.py: asyncio protocols on
uvloop, every request's bytes built once, so that the client's CPU does not decide the result):

- per_stream_http: N streams, one keep-alive connection each, `POST /v1/streams/{id}/step`
  with one step, the next sent when the answer arrives (one request = one stream-step);
- per_stream_websocket: N streams over 8 WebSockets, one message = one step of one stream,
  each stream with one step in flight;
- many_websocket: N streams, one WebSocket per client process, one message = one step of each
  of its N/clients streams ({"steps": [...]}, answered by one {"results": [...]});
- many_http: the same as `POST /v1/step` bodies;
- single_stream_http: one stream, one request at a time (latency).

For each: stream-steps/s, latency p50/p99 (ms, per request/message), the server's and the
clients' CPU microseconds per stream-step over the window (from /proc and process_time: the
figures the machine's load inflates least), and the load average. In this process,
`StreamPool.step` and `StreamService.step` (SQLite) on the same N streams, for the ratio that
shows what HTTP, JSON and durability cost. Writes --out (JSON).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import statefulrnn as sr

HIDDEN = 64
HERE = Path(__file__).parent
RESULTS = HERE / "results" / "serve.json"
CLI = "import sys; from statefulrnn.cli import main; sys.exit(main())"
WARMUP = 1.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not start") from None
            time.sleep(0.1)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and its live children so far (from /proc): a
    `serve --workers N` is a supervisor and N worker processes."""
    total = 0.0
    for p in [pid, *children(pid)]:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:  # exited meanwhile
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except (FileNotFoundError, ValueError):
        return []


def pct(values: np.ndarray, q: float) -> float:
    return round(float(np.percentile(values, q)) / 1000, 2) if len(values) else float("nan")


# ----------------------------------------------------------------- loads
def run_load(
    port: int, pid: int, mode: str, n: int, clients: int, connections: int, seconds: float, tmp
) -> dict:
    """`clients` serve_client.py processes share N streams; they start together (a common
    start time) and measure the same window. The server's CPU is read at the window's ends."""
    clients = max(1, min(clients, n))
    start_at = time.time() + 1.5  # the clients' imports and connections first
    procs, outs = [], []
    prefix = f"{mode}-"
    for c in range(clients):
        first, count = c * n // clients, (c + 1) * n // clients - c * n // clients
        out = Path(tmp) / f"client-{mode}-{c}.json"
        outs.append(out)
        cmd = [
            sys.executable, str(HERE / "serve_client.py"), "--port", str(port), "--mode", mode,
            "--prefix", prefix, "--first", str(first), "--count", str(count),
            "--connections", str(max(1, connections // clients)), "--start-at", str(start_at),
            "--warmup", str(WARMUP), "--seconds", str(seconds), "--out", str(out),
        ]  # fmt: skip
        procs.append(subprocess.Popen(cmd))
    load0 = os.getloadavg()
    time.sleep(max(0.0, start_at + WARMUP - time.time()))
    server0 = cpu_seconds(pid)
    time.sleep(seconds)
    server = cpu_seconds(pid) - server0
    for proc in procs:
        try:
            proc.wait(timeout=seconds + 60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    results = [json.loads(out.read_text()) for out in outs if out.exists()]
    if len(results) < clients:
        raise RuntimeError(f"{mode}: {clients - len(results)} client process(es) failed")
    errors = [r["error"] for r in results if r["error"]]
    steps = sum(r["steps"] for r in results)
    lat = np.concatenate([np.asarray(r["latencies_us"], dtype=np.float64) for r in results])
    client_cpu = sum(r["cpu_seconds"] for r in results)
    out = {
        "client_processes": clients,
        "stream_steps_per_s": round(steps / seconds, 1),
        "requests": len(lat),
        "p50_ms": pct(lat, 50),
        "p99_ms": pct(lat, 99),
        "server_cpu_us_per_step": round(server / steps * 1e6, 1) if steps else None,
        "client_cpu_us_per_step": round(client_cpu / steps * 1e6, 1) if steps else None,
        "load_average": [round(v, 2) for v in load0],
    }
    if mode != "http" or n > 1:
        out["streams"] = n
    if connections > 1 or mode.startswith("ws"):
        out["connections"] = max(1, connections // clients) * clients
    if errors:
        out["errors"] = errors[:3]
    return out


def in_process(model, n, seconds) -> dict:
    pool = sr.StreamPool(model)
    ids = [f"p{i}" for i in range(n)]
    x = np.random.default_rng(0).normal(size=(n, 1, 1)).astype(np.float32)
    pool.step(ids, x)
    calls, t0, cpu = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - t0 < seconds:
        pool.step(ids, x)
        calls += 1
    took, cpu = time.perf_counter() - t0, time.process_time() - cpu
    return {
        "stream_steps_per_s": round(calls * n / took, 1),
        "call_ms": round(took / calls * 1000, 3),
        "cpu_us_per_step": round(cpu / (calls * n) * 1e6, 3),
        "load_average": [round(v, 2) for v in os.getloadavg()],
    }


def in_process_service(model, n, seconds, path: Path) -> dict:
    """StreamService.step with the SQLite store (FULL sync): N one-step requests per call,
    each call one micro-batch and one commit, as the server runs them, without HTTP/JSON."""
    from statefulrnn.streams.durable import SQLiteStore
    from statefulrnn.streams.service import StepRequest, StreamService

    service = StreamService(sr.StreamPool(model), SQLiteStore(path))
    ids = [f"q{i}" for i in range(n)]
    try:
        service.step([StepRequest(i, [[0.5]]) for i in ids])
        calls, t0, cpu = 0, time.perf_counter(), time.process_time()
        while time.perf_counter() - t0 < seconds:
            service.step([StepRequest(i, [[0.5]]) for i in ids])
            calls += 1
        took, cpu = time.perf_counter() - t0, time.process_time() - cpu
    finally:
        service.close()
    return {
        "stream_steps_per_s": round(calls * n / took, 1),
        "call_ms": round(took / calls * 1000, 3),
        "cpu_us_per_step": round(cpu / (calls * n) * 1e6, 3),
        "load_average": [round(v, 2) for v in os.getloadavg()],
    }


# ----------------------------------------------------------------- servers
def start_serve(
    model_dir: Path,
    store_args: list[str],
    log: Path,
    delay_ms: float,
    server: str = "uvicorn",
    workers: int = 1,
) -> tuple[subprocess.Popen, int]:
    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with open(log, "ab") as err:
        proc = subprocess.Popen(
            [sys.executable, "-c", CLI, "serve", str(model_dir), "--port", str(port),
             "--batch-delay-ms", str(delay_ms), "--server", server, "--workers", str(workers),
             *store_args],
            stdout=subprocess.DEVNULL,
            stderr=err,
            env=env,
        )  # fmt: skip
    wait_port(port, proc, "statefulrnn serve")
    return proc, port


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


LOADS = {  # name: (serve_client mode, connections in all, streams: None = N)
    "per_stream_http": ("http", 1, None),
    "per_stream_websocket": ("ws", 8, None),
    "many_websocket": ("ws-many", 1, None),
    "many_http": ("http-many", 1, None),
    "single_stream_http": ("http", 1, 1),
}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="per load (default: 5)")
    parser.add_argument("--streams", type=int, default=1000, help="N (default: 1000)")
    parser.add_argument("--clients", type=int, default=2, help="client processes (default: 2)")
    parser.add_argument("--batch-delay-ms", type=float, default=2.0, help="serve's (default: 2)")
    parser.add_argument("--quick", action="store_true", help="1 s per load, 100 streams")
    parser.add_argument("--no-redis", action="store_true", help="skip the Redis store")
    parser.add_argument(
        "--sync-normal",
        action="store_true",
        help="also SQLite with --sync normal (no fsync per commit: what FULL's fsync costs)",
    )
    parser.add_argument("--loads", default=",".join(LOADS), help="comma-separated subset")
    parser.add_argument(
        "--server",
        default="uvicorn",
        help="serve --server, or several comma-separated (uvicorn,granian): each store on each",
    )
    parser.add_argument(
        "--workers",
        default="1",
        help="serve --workers, or several comma-separated (1,2): uvicorn only above 1",
    )
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"JSON (default: {RESULTS})")
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds, args.streams = 1.0, 100
    loads = [name.strip() for name in args.loads.split(",") if name.strip()]
    unknown = sorted(set(loads) - set(LOADS))
    if unknown:
        parser.error(f"unknown loads {unknown}; known: {list(LOADS)}")
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = sr.StatefulRNN(1, HIDDEN, 1, cell="lstm").eval()
    n = args.streams
    servers = [name.strip() for name in args.server.split(",") if name.strip()]
    if not servers or set(servers) - {"granian", "uvicorn"}:
        parser.error(f"--server: granian and/or uvicorn; received {args.server!r}")
    try:
        worker_counts = [int(w) for w in args.workers.split(",") if w.strip()]
    except ValueError:
        parser.error(f"--workers: comma-separated counts; received {args.workers!r}")
    if not worker_counts or min(worker_counts) < 1:
        parser.error(f"--workers: counts >= 1; received {args.workers!r}")
    out: dict = {
        "model": f"StatefulRNN lstm, input 1, hidden {HIDDEN}, output 1, float32",
        "servers": servers,
        "workers": worker_counts,
        "streams": n,
        "seconds_per_load": args.seconds,
        "client_processes": args.clients,
        "batch_delay_ms": args.batch_delay_ms,
        "cpus": os.cpu_count(),
        "load_average_before": [round(v, 2) for v in os.getloadavg()],
        "in_process_streampool": in_process(model, n, args.seconds),
        "stores": {},
    }
    print(json.dumps({"in_process_streampool": out["in_process_streampool"]}), flush=True)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        out["in_process_service_sqlite"] = in_process_service(
            model, n, args.seconds, tmp / "inproc.db"
        )
        print(json.dumps({"in_process_service_sqlite": out["in_process_service_sqlite"]}))
        model.save(tmp / "model")
        stores = {"sqlite": ["--state", str(tmp / "streams.db")]}
        if args.sync_normal:
            stores["sqlite_sync_normal"] = ["--state", str(tmp / "normal.db"), "--sync", "normal"]
        redis = None
        if not args.no_redis and shutil.which("redis-server"):
            rport = free_port()
            redis = subprocess.Popen(
                ["redis-server", "--port", str(rport), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no", "--dir", str(tmp)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )  # fmt: skip
            wait_port(rport, redis, "redis-server")
            stores["redis"] = ["--redis", f"redis://127.0.0.1:{rport}/0"]
        elif not args.no_redis:
            out["redis_skipped"] = "redis-server is not installed (apt-get install redis-server)"
        runs = [  # (store, server, workers, key in the JSON): one server keeps the store's name
            (
                store,
                server,
                w,
                (store if len(servers) == 1 else f"{store}_{server}") + (f"_w{w}" if w > 1 else ""),
            )
            for store in stores
            for server in servers
            for w in worker_counts
            if w == 1 or server == "uvicorn"  # serve --workers is uvicorn only
        ]
        try:
            for store, server, workers, name in runs:
                log = tmp / f"serve-{name}.log"
                if store.startswith("sqlite"):  # a fresh database for each run
                    Path(stores[store][1]).unlink(missing_ok=True)
                    for extra in ("-wal", "-shm"):
                        Path(stores[store][1] + extra).unlink(missing_ok=True)
                proc, port = start_serve(
                    tmp / "model", stores[store], log, args.batch_delay_ms, server, workers
                )
                res: dict = {}
                try:
                    for load in loads:
                        mode, connections, streams = LOADS[load]
                        res[load] = run_load(
                            port, proc.pid, mode, streams or n, args.clients, connections,
                            args.seconds, tmp,
                        )  # fmt: skip
                        print(json.dumps({name: {load: res[load]}}), flush=True)
                finally:
                    stop(proc)
                base = out["in_process_streampool"]["stream_steps_per_s"]
                for load in loads:
                    if load != "single_stream_http":
                        res[load]["ratio_to_streampool"] = round(
                            res[load]["stream_steps_per_s"] / base, 4
                        )
                res["load_average_after"] = [round(v, 2) for v in os.getloadavg()]
                out["stores"][name] = res
        finally:
            if redis is not None:
                redis.terminate()
                redis.wait()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.out}")
    return out


if __name__ == "__main__":
    main()
