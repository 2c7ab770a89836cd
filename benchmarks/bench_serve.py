"""Load generator for `statefulrnn serve`: throughput and latency on loopback, LSTM(64), 1 in, 1 out.

    .venv/bin/python benchmarks/bench_serve.py [--seconds 5] [--streams 1000] [--quick]

Starts `statefulrnn serve` (a real uvicorn process) with the embedded store (SQLite, FULL
sync) and, if redis-server is installed, with a Redis store (a redis-server of its own, no
persistence); for each it measures, bounded by --seconds and --max-requests per load:

- batch: `POST /v1/step` carrying N streams, one step each (N stream-steps per request), 4
  clients at once: stream-steps/s and request latency p50/p99;
- per-stream WebSocket: N streams, each with one step in flight at a time, multiplexed over
  8 WebSocket connections (one message = one step of one stream): stream-steps/s and
  per-step latency p50/p99;
- per-stream HTTP: N concurrent clients, each `POST /v1/streams/{id}/step` one step at a
  time (one request = one step): stream-steps/s and p50/p99;
- single: one stream, one request at a time: latency p50.

and, in this process, `StreamPool.step` on the same load (N streams, one step per call), for
the ratio that shows what HTTP, JSON and durability cost. The load generator runs on the same
2 cores as the server; the load average is recorded beside the numbers.
Writes benchmarks/results/serve.json.
"""

from __future__ import annotations

import argparse
import asyncio
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
RESULTS = Path(__file__).parent / "results" / "serve.json"
CLI = "import sys; from statefulrnn.cli import main; sys.exit(main())"


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
    """User + system CPU seconds of a process so far (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measured(load, pid: int, *args) -> dict:
    """Run one load; add the server's and this client's CPU microseconds per stream-step (a
    figure that the machine's load does not inflate the way wall time is inflated)."""
    server0, client0 = cpu_seconds(pid), time.process_time()
    res = asyncio.run(load(*args))
    steps = res.get("requests", 0) * (args[1] if load is load_batch else 1)
    if steps:
        res["server_cpu_us_per_step"] = round((cpu_seconds(pid) - server0) / steps * 1e6, 1)
        res["client_cpu_us_per_step"] = round((time.process_time() - client0) / steps * 1e6, 1)
    return res


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) * 1000 if values else float("nan")


def summary(steps: int, seconds: float, latencies: list[float], requests: int) -> dict:
    return {
        "stream_steps_per_s": round(steps / seconds, 1),
        "requests": requests,
        "p50_ms": round(pct(latencies, 50), 2),
        "p99_ms": round(pct(latencies, 99), 2),
    }


# ----------------------------------------------------------------- loads
async def load_batch(port, n, seconds, max_requests, clients=4) -> dict:
    import httpx

    rng = np.random.default_rng(0)
    lat: list[float] = []
    done = {"requests": 0}
    end = time.monotonic() + seconds

    async def client(c):
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as http:
            while time.monotonic() < end and done["requests"] < max_requests:
                body = {
                    "steps": [
                        {"id": f"b{i}", "x": [[float(v)]]} for i, v in enumerate(rng.normal(size=n))
                    ]
                }
                t = time.perf_counter()
                r = await http.post("/v1/step", json=body)
                lat.append(time.perf_counter() - t)
                r.raise_for_status()
                done["requests"] += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(client(c) for c in range(clients)))
    took = time.perf_counter() - t0
    return {"clients": clients, **summary(done["requests"] * n, took, lat, done["requests"])}


async def load_ws(port, n, seconds, max_requests, connections=8) -> dict:
    import websockets

    lat: list[float] = []
    done = {"steps": 0}
    end = time.monotonic() + seconds

    async def connection(c):
        ids = [f"w{i}" for i in range(c, n, connections)]
        sent: dict[str, float] = {}
        async with websockets.connect(f"ws://127.0.0.1:{port}/v1/ws", max_size=None) as ws:
            for sid in ids:  # one step in flight per stream
                sent[sid] = time.perf_counter()
                await ws.send(json.dumps({"id": sid, "x": [[0.5]]}))
            while sent:
                reply = json.loads(await ws.recv())
                sid = reply["id"]
                lat.append(time.perf_counter() - sent.pop(sid))
                if "error" in reply:
                    raise RuntimeError(reply["error"])
                done["steps"] += 1
                if time.monotonic() < end and done["steps"] < max_requests:
                    sent[sid] = time.perf_counter()
                    await ws.send(json.dumps({"id": sid, "x": [[0.5]]}))

    t0 = time.perf_counter()
    await asyncio.gather(*(connection(c) for c in range(connections)))
    took = time.perf_counter() - t0
    return {"connections": connections, **summary(done["steps"], took, lat, done["steps"])}


async def load_http_per_stream(port, n, seconds, max_requests) -> dict:
    import httpx

    lat: list[float] = []
    done = {"steps": 0}
    end = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{port}", timeout=120, limits=limits
    ) as http:

        async def client(i):
            while time.monotonic() < end and done["steps"] < max_requests:
                t = time.perf_counter()
                r = await http.post(f"/v1/streams/h{i}/step", json={"x": [[0.5]]})
                lat.append(time.perf_counter() - t)
                r.raise_for_status()
                done["steps"] += 1

        t0 = time.perf_counter()
        await asyncio.gather(*(client(i) for i in range(n)))
        took = time.perf_counter() - t0
    return {"clients": n, **summary(done["steps"], took, lat, done["steps"])}


async def load_single(port, seconds, max_requests) -> dict:
    import httpx

    lat: list[float] = []
    end = time.monotonic() + seconds
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as http:
        while time.monotonic() < end and len(lat) < max_requests:
            t = time.perf_counter()
            r = await http.post("/v1/streams/one/step", json={"x": [[0.5]]})
            lat.append(time.perf_counter() - t)
            r.raise_for_status()
    return {
        "requests": len(lat),
        "p50_ms": round(pct(lat, 50), 2),
        "p99_ms": round(pct(lat, 99), 2),
    }


def in_process(model, n, seconds) -> dict:
    pool = sr.StreamPool(model)
    ids = [f"p{i}" for i in range(n)]
    x = np.random.default_rng(0).normal(size=(n, 1, 1)).astype(np.float32)
    pool.step(ids, x)
    calls, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        pool.step(ids, x)
        calls += 1
    took = time.perf_counter() - t0
    cpu = time.process_time()
    for _ in range(calls):
        pool.step(ids, x)
    cpu = time.process_time() - cpu
    return {
        "stream_steps_per_s": round(calls * n / took, 1),
        "call_ms": round(took / calls * 1000, 3),
        "cpu_us_per_step": round(cpu / (calls * n) * 1e6, 3),
    }


# ----------------------------------------------------------------- servers
def start_serve(model_dir: Path, store_args: list[str], log: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with open(log, "ab") as err:
        proc = subprocess.Popen(
            [sys.executable, "-c", CLI, "serve", str(model_dir), "--port", str(port), *store_args],
            stdout=subprocess.DEVNULL,
            stderr=err,
            env=env,
        )
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="per load (default: 5)")
    parser.add_argument("--streams", type=int, default=1000, help="N (default: 1000)")
    parser.add_argument("--max-requests", type=int, default=200_000, help="per load")
    parser.add_argument("--quick", action="store_true", help="1 s per load, 100 streams")
    parser.add_argument("--no-redis", action="store_true", help="skip the Redis store")
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.streams = 1.0, 100
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = sr.StatefulRNN(1, HIDDEN, 1, cell="lstm").eval()
    n = args.streams
    out = {
        "model": f"StatefulRNN lstm, input 1, hidden {HIDDEN}, output 1, float32",
        "streams": n,
        "seconds_per_load": args.seconds,
        "cpus": os.cpu_count(),
        "load_average_before": os.getloadavg(),
        "in_process_streampool": in_process(model, n, args.seconds),
        "stores": {},
    }
    print(json.dumps({"in_process_streampool": out["in_process_streampool"]}), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model.save(tmp / "model")
        stores = {"sqlite": ["--state", str(tmp / "streams.db")]}
        redis = None
        if not args.no_redis and shutil.which("redis-server"):
            rport = free_port()
            redis = subprocess.Popen(
                [
                    "redis-server",
                    "--port",
                    str(rport),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dir",
                    str(tmp),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            wait_port(rport, redis, "redis-server")
            stores["redis"] = ["--redis", f"redis://127.0.0.1:{rport}/0"]
        try:
            for name, store_args in stores.items():
                proc, port = start_serve(tmp / "model", store_args, tmp / f"serve-{name}.log")
                try:
                    res = {}
                    pid, limit = proc.pid, args.max_requests
                    res["batch_http"] = measured(load_batch, pid, port, n, args.seconds, limit)
                    res["per_stream_websocket"] = measured(
                        load_ws, pid, port, n, args.seconds, limit
                    )
                    res["per_stream_http"] = measured(
                        load_http_per_stream, pid, port, n, args.seconds, limit
                    )
                    res["single_stream_http"] = measured(
                        load_single, pid, port, args.seconds, limit
                    )
                    base = out["in_process_streampool"]["stream_steps_per_s"]
                    for load in ("batch_http", "per_stream_websocket", "per_stream_http"):
                        res[load]["ratio_to_streampool"] = round(
                            res[load]["stream_steps_per_s"] / base, 4
                        )
                    res["load_average_after"] = os.getloadavg()
                    out["stores"][name] = res
                    print(json.dumps({name: res}), flush=True)
                finally:
                    stop(proc)
        finally:
            if redis is not None:
                redis.terminate()
                redis.wait()
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
