"""`statefulrnn serve` (issue 15): HTTP and WebSocket steps == stateful prediction, bad input
refused alone, state that survives kill -9 of the server, replicas sharing one Redis.

Oracles: `sr.predict(model, seqs, mode="stateful")` (the same numbers as one pass over each
stream's whole sequence), and the same server run without interruption.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
from conftest import make_rnn
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import statefulrnn as sr

for _name in ("starlette", "httpx", "prometheus_client", "orjson"):  # the serve extra (in dev)
    pytest.importorskip(_name)
from starlette.testclient import TestClient  # noqa: E402

from statefulrnn.streams import StreamPool  # noqa: E402
from statefulrnn.streams.durable import MemoryStore, SQLiteStore  # noqa: E402
from statefulrnn.streams.http import make_app  # noqa: E402
from statefulrnn.streams.service import StreamService  # noqa: E402

F, H, OUT = 2, 6, 2
TOL = 1e-5
CLI = "import sys; from statefulrnn.cli import main; sys.exit(main())"
SERVERS = ("uvicorn", "granian")  # `serve --server`: the default first


def make_model(seed=0, cell="lstm"):
    return make_rnn(F, H, OUT, cell, seed=seed, eval=True)


def make_bundle(seed=0, cell="lstm"):
    """A model with input and target scaling (user units differ from the network's)."""
    from statefulrnn.bundle import ModelBundle
    from statefulrnn.data.scaling import Scaling

    rng = np.random.default_rng(seed)
    xs = [rng.normal(3.0, 5.0, size=(20, F)) for _ in range(3)]
    ys = [rng.normal(-2.0, 0.1, size=(20, OUT)) for _ in range(3)]
    scaling = Scaling.fit(sr.Sequences.from_arrays(xs, ys))
    return ModelBundle(make_model(seed, cell), scaling=scaling, loss="mse")


def stateful(model, xs: list[np.ndarray]) -> list[np.ndarray]:
    seqs = sr.Sequences.from_arrays(xs, [np.zeros((len(x), OUT)) for x in xs])
    return sr.predict(model, seqs, mode="stateful")


def client_for(model, store=None, **kw) -> TestClient:
    service = StreamService(StreamPool(model), store if store is not None else MemoryStore())
    return TestClient(make_app(service, **kw))


# ----------------------------------------------------------------- 1. equality
@pytest.fixture(scope="module")
def served():
    bundle = make_bundle()  # answers in the user's units, as sr.predict(bundle) does
    with client_for(bundle, delay=0.001) as client:
        yield bundle, client


@settings(max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_interleaving_of_http_and_websocket_steps_equals_stateful_predict(served, data):
    model, client = served
    run = uuid.uuid4().hex[:8]  # fresh stream ids for each example
    rng = np.random.default_rng(data.draw(st.integers(0, 10_000)))
    lengths = data.draw(st.lists(st.integers(1, 8), min_size=1, max_size=4))
    xs = [rng.normal(3.0, 5.0, size=(t, F)) for t in lengths]
    ids = [f"{run}-{i}" for i in range(len(xs))]  # strings: a path's id is a string
    got: list[list] = [[] for _ in xs]
    pos = [0] * len(xs)
    with client.websocket_connect("/v1/ws") as ws:
        pending: list[tuple[int, int, int]] = []  # (stream, k, order) sent by WebSocket, unread
        order = iter(range(10**9))  # the order in which steps were sent

        def read_ws(stream=None):
            """Read WebSocket replies (all, or until `stream` has none pending)."""
            while pending and (stream is None or any(i == stream for i, _, _ in pending)):
                message = ws.receive_json()  # one step's reply, or a steps message's results
                for reply in message.get("results", [message]):
                    n = next(j for j, p in enumerate(pending) if p[2] == reply["tag"])
                    i, k, at = pending.pop(n)
                    assert "error" not in reply, reply
                    assert reply["id"] == ids[i] and len(reply["y"]) == k
                    got[i].append((at, reply["y"]))

        while any(p < len(x) for p, x in zip(pos, xs)):
            open_ = [i for i, x in enumerate(xs) if pos[i] < len(x)]
            how = data.draw(st.sampled_from(["http", "many", "ws", "ws-many"]))
            chosen = data.draw(st.lists(st.sampled_from(open_), min_size=1, unique=True))
            if how in ("http", "many"):
                for i in chosen:
                    read_ws(i)  # a stream's earlier WebSocket steps are answered first
            steps = []
            for i in chosen:
                k = data.draw(st.integers(1, len(xs[i]) - pos[i]))
                steps.append((i, k, xs[i][pos[i] : pos[i] + k].tolist()))
                pos[i] += k
            if how == "http":
                for i, _k, x in steps:
                    r = client.post(f"/v1/streams/{ids[i]}/step", json={"x": x})
                    assert r.status_code == 200, r.text
                    got[i].append((next(order), r.json()["y"]))
            elif how == "many":
                r = client.post(
                    "/v1/step", json={"steps": [{"id": ids[i], "x": x} for i, _, x in steps]}
                )
                assert r.status_code == 200, r.text
                for (i, _, _), res in zip(steps, r.json()["results"]):
                    assert "error" not in res, res
                    got[i].append((next(order), res["y"]))
            elif how == "ws":  # one message per stream, pipelined
                for i, k, x in steps:
                    at = next(order)
                    ws.send_text(json.dumps({"id": ids[i], "x": x, "tag": at}))
                    pending.append((i, k, at))
            else:
                tagged = [(i, k, x, next(order)) for i, k, x in steps]
                ws.send_text(
                    json.dumps(
                        {"steps": [{"id": ids[i], "x": x, "tag": at} for i, _, x, at in tagged]}
                    )
                )
                pending += [(i, k, at) for i, k, _, at in tagged]
        read_ws()
    want = stateful(model, xs)
    for i in range(len(xs)):
        got[i].sort(key=lambda ay: ay[0])  # replies of pipelined messages may come in any order
        np.testing.assert_allclose(
            np.concatenate([y for _, y in got[i]]), want[i], atol=TOL, rtol=0
        )


# ----------------------------------------------------------------- 3. bad input
def test_bad_inputs_get_clear_4xx_and_change_nothing_else(tmp_path):
    model = make_model()
    x = np.random.default_rng(3).normal(size=(4, F))
    store = SQLiteStore(tmp_path / "s.db")
    with client_for(model, store, max_body=4096) as c:
        assert c.post("/v1/streams/a/step", json={"x": x[:1].tolist()}).status_code == 200

        def refused(response, status, words):
            assert response.status_code == status, response.text
            assert words in response.json()["error"], response.json()

        refused(c.post("/v1/streams/a/step", content=b'{"x": [[1, 2]'), 400, "malformed JSON")
        refused(c.post("/v1/streams/a/step", content=b"[" * 1000), 400, "nested more than")
        refused(c.post("/v1/streams/a/step", json={"x": [[1, 2, 3]]}), 400, "takes 2")
        refused(c.post("/v1/streams/a/step", content=b'{"x": [[1, NaN]]}'), 400, "not finite")
        refused(c.post("/v1/streams/a/step", json={"x": [[1, "a"]]}), 400, "x must be")
        refused(c.post("/v1/streams/a/step", json={"y": [[1, 2]]}), 400, "unknown keys")
        refused(c.post("/v1/streams/a/step", json={"x": [[0.5] * 2] * 1000}), 413, "limit")
        refused(c.post("/v1/streams/a/step", content=b"x" * 5000), 413, "limit")
        refused(c.get("/v1/streams/nobody"), 404, "no stream 'nobody'")
        refused(c.post("/v1/streams/nobody/reset"), 404, "no stream")
        refused(c.delete("/v1/streams/nobody"), 404, "no stream")
        refused(
            c.post("/v1/streams/a/step", json={"x": [[1, 2]], "model": "0123abcd"}),
            409,
            "its stream states mean nothing to other weights",
        )
        # one body: bad steps answered with their errors, the good ones applied
        r = c.post(
            "/v1/step",
            content=json.dumps(
                {
                    "steps": [
                        {"id": "a", "x": x[1:2].tolist()},
                        {"id": "b", "x": [[1.0]]},
                        {"id": "c", "x": [[1.0, float("nan")]]},
                        {"id": "d"},
                        {"id": True, "x": [[1.0, 2.0]]},
                        {"id": "e", "x": x[:1].tolist(), "seq": -1},
                    ]
                }
            ).encode(),
        )
        assert r.status_code == 200
        res = r.json()["results"]
        assert "error" not in res[0]
        assert [s.get("status") for s in res[1:]] == [400] * 5
        assert "x[0][1] = nan is not finite" in res[2]["error"]
        assert 'has no "x"' in res[3]["error"]
        assert "seq must be an integer" in res[5]["error"]
        with c.websocket_connect("/v1/ws") as ws:  # the same refusals, one reply each
            ws.send_text('{"id": "a", "x": [[1, 2]')  # the connection's first message
            assert ws.receive_json()["status"] == 400
            ws.send_text(json.dumps({"id": "a", "x": [[1, 2, 3]], "tag": 5}))
            bad = ws.receive_json()
            assert bad["status"] == 400 and "takes 2" in bad["error"] and bad["tag"] == 5
            ws.send_text(json.dumps({"steps": [{"id": "z", "x": [[1.0]]}]}))
            assert ws.receive_json()["results"][0]["status"] == 400
        r = c.post("/v1/streams/a/step", json={"x": x[2:].tolist()})
        y_after = r.json()["y"]
        assert c.get("/v1/streams/a").json()["version"] == 3
        assert sorted(store.ids()) == ["a"]  # nothing of the refused requests was stored
        assert len(store) == 1  # the count the store keeps (for /metrics) agrees
    want = stateful(model, [x])[0]
    np.testing.assert_allclose(y_after, want[2:], atol=TOL)


def test_a_store_of_another_model_is_refused_at_start(tmp_path):
    store = SQLiteStore(tmp_path / "s.db")
    StreamService(StreamPool(make_model(0)), store).close()
    with pytest.raises(ValueError, match="a state means nothing to other weights"):
        StreamService(StreamPool(make_model(1)), SQLiteStore(tmp_path / "s.db"))


def test_health_metrics_docs_and_stream_lifecycle(tmp_path):
    model = make_model()
    with client_for(model, SQLiteStore(tmp_path / "s.db"), idle_timeout=0.2) as c:
        assert c.get("/healthz").json() == {"status": "ok", "pid": os.getpid()}
        assert c.get("/readyz").json()["identity"] == model.identity()
        x = [[0.1, 0.2]]
        assert c.post("/v1/streams/s/step", json={"x": x, "seq": 4}).json()["version"] == 1
        again = c.post("/v1/streams/s/step", json={"x": x, "seq": 4}).json()  # a retry
        assert again["replayed"] and again["version"] == 1
        assert c.get("/v1/streams/s").json() == {"id": "s", "version": 1, "seq": 4, "held": True}
        time.sleep(0.6)  # idle: evicted from memory, kept in the store
        assert c.get("/v1/streams/s").json()["held"] is False
        assert c.post("/v1/streams/s/reset").json() == {"id": "s", "version": 2}
        y = c.post("/v1/streams/s/step", json={"x": x, "end": True}).json()["y"]
        np.testing.assert_allclose(y, stateful(model, [np.array(x)])[0], atol=TOL)
        assert c.get("/v1/streams/s").status_code == 404  # ended
        metrics = c.get("/metrics").text
        for name in (
            "statefulrnn_requests_total",
            "statefulrnn_batch_requests_bucket",
            "statefulrnn_request_seconds_bucket",
            "statefulrnn_streams_held",
            "statefulrnn_store_errors_total",
        ):
            assert name in metrics
        assert 'statefulrnn_requests_total{status="200"}' in metrics
        assert metric(metrics, "statefulrnn_streams_known") == 0  # s ended: dropped
        assert "/v1/streams/{sid}/step" in c.get("/openapi.json").json()["paths"]
        assert "statefulrnn serve" in c.get("/docs").text


# ----------------------------------------------------------------- 2. Redis: replicas
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_redis(port: int, folder: Path, *persist: str) -> subprocess.Popen:
    exe = shutil.which("redis-server")
    if exe is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server); CI has it")
    proc = subprocess.Popen(
        [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", str(folder),
         *persist],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise RuntimeError("redis-server did not start") from None
            time.sleep(0.05)


@pytest.fixture
def redis_url(tmp_path):
    port = free_port()
    proc = start_redis(port, tmp_path, "--appendonly", "no")
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_two_replicas_on_one_redis_alternating_every_step_equal_one_process(redis_url):
    from statefulrnn.streams.redis_store import RedisStore

    model = make_model(cell="gru")
    rng = np.random.default_rng(7)
    xs = [rng.normal(size=(9, F)) for _ in range(3)]
    replicas = [client_for(model, RedisStore(redis_url, prefix="r")) for _ in range(2)]
    got = [[] for _ in xs]
    with replicas[0] as a, replicas[1] as b:
        for t in range(9):
            for i in range(3):
                c = (a, b)[(t + i) % 2]  # each stream switches replica at every step
                r = c.post(f"/v1/streams/s{i}/step", json={"x": xs[i][t : t + 1].tolist()})
                assert r.status_code == 200, r.text
                got[i].append(r.json()["y"])
        # a race: both replicas hold stream s0 at the same version; only one may advance it
        sa = a.app.state.serving.service
        sb = b.app.state.serving.service
        from statefulrnn.streams.service import StepRequest

        before = sa.info("s0")["version"]
        ra = sa.step([StepRequest("s0", xs[0][:1])])[0]
        sb._held["s0"].version = before  # b still believes the old version (it read it first)
        sb.store.versions = lambda ids: {i: before for i in ids}  # and its re-read raced too
        rb = sb.step([StepRequest("s0", xs[0][:1])])[0]
        assert ra.status == 200 and rb.status == 409 and "another replica" in rb.error
    want = stateful(model, xs)
    for i in range(3):
        np.testing.assert_allclose(np.concatenate(got[i]), want[i], atol=TOL)


def metric(text: str, name: str) -> float:
    line = next(line for line in text.splitlines() if line.startswith(name + " "))
    return float(line.split()[1])


def test_redis_down_mid_service_answers_503_naming_the_store_and_recovers(tmp_path):
    """Redis is SIGKILLed while the service runs (appendfsync always: what it acknowledged is
    on disk): steps get 503 naming the store, the store-error metric counts them, nothing is
    applied; restarted on the same port and files, the service goes on and every stream's
    acknowledged steps are all there (continuing gives the uninterrupted outputs)."""
    from statefulrnn.streams.redis_store import RedisStore

    port = free_port()
    persist = ("--appendonly", "yes", "--appendfsync", "always")
    redis = start_redis(port, tmp_path, *persist)
    url = f"redis://127.0.0.1:{port}/0"
    model = make_model()
    rng = np.random.default_rng(5)
    xs = [rng.normal(size=(6, F)) for _ in range(3)]
    got: list[list] = [[] for _ in xs]
    try:
        with client_for(model, RedisStore(url, timeout=2.0)) as c:

            def step(i, t):
                return c.post(f"/v1/streams/s{i}/step", json={"x": xs[i][t : t + 1].tolist()})

            for t in range(3):
                for i in range(3):
                    r = step(i, t)
                    assert r.status_code == 200, r.text
                    got[i].append(r.json()["y"])
            page = c.get("/metrics").text
            assert metric(page, "statefulrnn_streams_known") == 3  # the store's count, no scan
            assert metric(page, "statefulrnn_store_errors_total") == 0
            redis.kill()
            redis.wait()
            for i in range(3):  # step 3 of each stream: refused, not applied
                r = step(i, 3)
                assert r.status_code == 503, r.text
                assert "state store" in r.json()["error"] and url in r.json()["error"]
            many = c.post("/v1/step", json={"steps": [{"id": "s0", "x": xs[0][3:4].tolist()}]})
            assert many.json()["results"][0]["status"] == 503
            assert c.get("/readyz").status_code == 503
            assert c.get("/v1/streams/s0").status_code == 503
            page = c.get("/metrics").text
            assert metric(page, "statefulrnn_store_errors_total") >= 4
            assert 'statefulrnn_requests_total{status="503"}' in page
            redis = start_redis(port, tmp_path, *persist)  # back, with its files
            assert c.get("/readyz").status_code == 200
            for t in range(3, 6):  # the client resends step 3, then goes on
                for i in range(3):
                    r = step(i, t)
                    assert r.status_code == 200, r.text
                    got[i].append(r.json()["y"])
            assert c.get("/v1/streams/s1").json()["version"] == 6
            assert metric(c.get("/metrics").text, "statefulrnn_streams_known") == 3
    finally:
        redis.kill()
        redis.wait()
    want = stateful(model, xs)
    for i in range(3):
        np.testing.assert_allclose(np.concatenate(got[i]), want[i], atol=TOL)


# ----------------------------------------------------------------- 2. kill -9 the server
def workers_of(pid: int) -> set[int]:
    return {int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()}


def wait_gone(pids: set[int], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    for pid in pids:
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
        else:
            raise AssertionError(f"worker {pid} outlived its supervisor by {timeout} s")


def spawn_server(model_dir, port, store_args) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    log = Path(model_dir).parent / f"serve-{port}.log"
    with open(log, "ab") as err:  # the child keeps its own copy of the file
        return subprocess.Popen(
            [sys.executable, "-c", CLI, "serve", str(model_dir), "--port", str(port), *store_args],
            stdout=subprocess.DEVNULL,
            stderr=err,
            env=env,
        )


def wait_ready(proc: subprocess.Popen, model_dir, port) -> subprocess.Popen:
    import httpx

    log = Path(model_dir).parent / f"serve-{port}.log"
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            raise RuntimeError(f"serve exited: {log.read_text()[-2000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("serve did not become ready")
        time.sleep(0.1)


def start_server(model_dir, port, store_args) -> subprocess.Popen:
    return wait_ready(spawn_server(model_dir, port, store_args), model_dir, port)


def crash_and_continue(tmp_path, store_args, kills: int = 2) -> None:
    """Many streams stepped concurrently (one thread per stream, seq numbers); the server is
    SIGKILLed mid-load `kills` times and restarted; each client resends its unacknowledged
    step. Every stream's answers equal stateful prediction."""
    import concurrent.futures as cf

    import httpx

    model = make_bundle(cell="lstm")  # saved with its scaling: serve answers in user units
    model.save(tmp_path / "model")
    n_streams, steps = 6, 30
    rng = np.random.default_rng(11)
    xs = [rng.normal(size=(steps, F)) for _ in range(n_streams)]
    port = free_port()
    got: list[list] = [[None] * steps for _ in xs]
    replayed = 0
    server = start_server(tmp_path / "model", port, store_args)
    total = n_streams * steps

    def acknowledged() -> int:
        return sum(y is not None for ys in got for y in ys)

    try:
        for round_ in range(kills + 1):

            def client(i):
                nonlocal replayed
                with httpx.Client(timeout=60) as http:
                    for t in range(steps):
                        if got[i][t] is not None:
                            continue
                        try:
                            r = http.post(
                                f"http://127.0.0.1:{port}/v1/streams/s{i}/step",
                                json={"x": xs[i][t : t + 1].tolist(), "seq": t},
                            )
                        except httpx.HTTPError:
                            return  # the server died: this step is not acknowledged
                        assert r.status_code == 200, r.text
                        got[i][t] = r.json()["y"]
                        replayed += bool(r.json().get("replayed"))

            before = acknowledged()
            with cf.ThreadPoolExecutor(n_streams) as pool:
                futures = [pool.submit(client, i) for i in range(n_streams)]
                if round_ < kills:  # kill mid-load, after some more steps were acknowledged
                    target = before + (total - before) // (kills - round_ + 1)
                    while acknowledged() < target and not all(f.done() for f in futures):
                        time.sleep(0.005)
                    workers = workers_of(server.pid)  # `--workers N`: they die with it
                    server.send_signal(signal.SIGKILL)
                    server.wait()
                    wait_gone(workers)
                for f in futures:
                    f.result()
            if round_ < kills:
                assert before < acknowledged() < total  # the kill came mid-load
                server = start_server(tmp_path / "model", port, store_args)
    finally:
        server.kill()
        server.wait()
    want = stateful(model, xs)
    for i in range(n_streams):
        assert all(y is not None for y in got[i])
        np.testing.assert_allclose(np.concatenate(got[i]), want[i], atol=TOL)


@pytest.mark.slow
@pytest.mark.parametrize("server", SERVERS)
def test_kill_9_of_the_server_loses_no_acknowledged_step_sqlite(tmp_path, server):
    crash_and_continue(tmp_path, ["--state", str(tmp_path / "streams.db"), "--server", server])


@pytest.mark.slow
def test_kill_9_of_serve_workers_loses_no_acknowledged_step_sqlite(tmp_path):
    crash_and_continue(tmp_path, ["--state", str(tmp_path / "streams.db"), "--workers", "2"])


@pytest.mark.slow
@pytest.mark.parametrize("server", SERVERS)
def test_kill_9_of_the_server_loses_no_acknowledged_step_redis(tmp_path, redis_url, server):
    crash_and_continue(tmp_path, ["--redis", redis_url, "--server", server])


@pytest.mark.slow
@pytest.mark.parametrize("server", SERVERS)
def test_each_server_serves_every_endpoint_and_stops_cleanly(tmp_path, server):
    """A real `serve --server S` process: one-step and many-step HTTP, WebSocket (one step
    and many per message) equal stateful prediction; bad input is refused (malformed JSON,
    a body over --max-body, a WebSocket message over it); health, metrics, OpenAPI, docs;
    SIGTERM stops it gracefully and frees the store (a new process opens it and goes on)."""
    import httpx
    from websockets.exceptions import ConnectionClosedError
    from websockets.sync.client import connect

    bundle = make_bundle(cell="lstm")
    bundle.save(tmp_path / "model")
    rng = np.random.default_rng(5)
    xs = [rng.normal(2.0, 3.0, size=(6, F)) for _ in range(3)]
    port = free_port()
    args = ["--state", str(tmp_path / "s.db"), "--server", server, "--max-body", "4000"]
    proc = start_server(tmp_path / "model", port, args)
    url = f"http://127.0.0.1:{port}"
    got: list[list] = [[] for _ in xs]
    try:
        with httpx.Client(timeout=30) as http, connect(f"ws://127.0.0.1:{port}/v1/ws") as ws:
            for t in range(3):  # HTTP: stream 0 one step per request, 1 and 2 in one body
                r = http.post(f"{url}/v1/streams/s0/step", json={"x": xs[0][t : t + 1].tolist()})
                assert r.status_code == 200, r.text
                got[0].append(r.json()["y"])
                body = {"steps": [{"id": f"s{i}", "x": xs[i][t : t + 1].tolist()} for i in (1, 2)]}
                results = http.post(f"{url}/v1/step", json=body).json()["results"]
                for i, res in zip((1, 2), results):
                    got[i].append(res["y"])
            for t in range(3, 6):  # WebSocket: stream 0 one step per message, 1 and 2 in one
                ws.send(json.dumps({"id": "s0", "x": xs[0][t : t + 1].tolist(), "tag": t}))
                reply = json.loads(ws.recv())
                assert reply["tag"] == t
                got[0].append(reply["y"])
                steps = [{"id": f"s{i}", "x": xs[i][t : t + 1].tolist()} for i in (1, 2)]
                ws.send(json.dumps({"steps": steps}))
                for i, res in zip((1, 2), json.loads(ws.recv())["results"]):
                    got[i].append(res["y"])
            ws.send("x" * 5000)  # over --max-body: granian hands it to the app (413, the
            try:  # connection stays); uvicorn's WebSocket limit closes the connection (1009)
                assert json.loads(ws.recv())["status"] == 413 and server == "granian"
            except ConnectionClosedError as closed:
                assert closed.rcvd is not None and closed.rcvd.code == 1009 and server == "uvicorn"
            bad = http.post(f"{url}/v1/streams/s0/step", content=b'{"x": [[1, }')
            assert bad.status_code == 400 and "malformed JSON" in bad.json()["error"]
            huge = http.post(f"{url}/v1/streams/s0/step", content=b" " * 5000)
            assert huge.status_code == 413 and "--max-body" in huge.json()["error"]
            assert http.get(f"{url}/healthz").json() == {"status": "ok", "pid": proc.pid}
            assert http.get(f"{url}/readyz").json()["status"] == "ready"
            assert 'statefulrnn_requests_total{status="200"}' in http.get(f"{url}/metrics").text
            assert "/v1/streams/{sid}/step" in http.get(f"{url}/openapi.json").json()["paths"]
            assert "statefulrnn serve" in http.get(f"{url}/docs").text
            assert http.get(f"{url}/v1/streams/s0").json()["version"] == 6
        proc.send_signal(signal.SIGTERM)  # uvicorn re-raises it after its graceful stop
        assert proc.wait(timeout=30) in (0, -signal.SIGTERM)
        assert '"message": "stopped"' in (tmp_path / f"serve-{port}.log").read_text()
        proc = start_server(tmp_path / "model", port, args)  # the store was released
        with httpx.Client(timeout=30) as http:
            assert http.get(f"{url}/v1/streams/s2").json()["version"] == 6
    finally:
        proc.kill()
        proc.wait()
    want = stateful(bundle, xs)
    for i in range(3):
        np.testing.assert_allclose(np.concatenate(got[i]), want[i], atol=TOL)


def test_serve_refuses_bad_options(tmp_path, capsys):
    from statefulrnn.cli import main

    make_model().save(tmp_path / "model")
    assert main(["serve", str(tmp_path / "model"), "--capacity", "5"]) == 2
    assert "--capacity evicts streams" in capsys.readouterr().err
    (tmp_path / "f").write_text("")
    assert main(["serve", str(tmp_path / "model"), "--state", str(tmp_path / "f" / "s.db")]) == 2
    assert "cannot open --state" in capsys.readouterr().err
    assert main(["serve", str(tmp_path / "model"), "--redis", "redis://127.0.0.1:1/0"]) == 2
    assert "cannot reach Redis" in capsys.readouterr().err


@pytest.mark.slow
def test_two_serve_processes_on_one_redis_alternating_every_step(tmp_path, redis_url):
    """Two real `statefulrnn serve` processes (replicas, one on uvicorn, one on granian) on one
    redis-server; the client sends each stream's steps to the replicas in turn: the
    single-process (stateful) outputs."""
    import httpx

    bundle = make_bundle(cell="gru")
    bundle.save(tmp_path / "model")
    rng = np.random.default_rng(13)
    xs = [rng.normal(3.0, 5.0, size=(8, F)) for _ in range(3)]
    ports = [free_port(), free_port()]
    servers = [  # one replica on each HTTP server
        spawn_server(tmp_path / "model", p, ["--redis", redis_url, "--server", name])
        for p, name in zip(ports, SERVERS)
    ]
    for server, port in zip(servers, ports):  # both start at once
        wait_ready(server, tmp_path / "model", port)
    got = [[] for _ in xs]
    try:
        with httpx.Client(timeout=60) as http:
            for t in range(8):
                for i in range(3):
                    port = ports[(t + i) % 2]
                    r = http.post(
                        f"http://127.0.0.1:{port}/v1/streams/s{i}/step",
                        json={"x": xs[i][t : t + 1].tolist(), "seq": t},
                    )
                    assert r.status_code == 200, r.text
                    got[i].append(r.json()["y"])
            info = [http.get(f"http://127.0.0.1:{p}/v1/streams/s0").json() for p in ports]
    finally:
        for s in servers:
            s.kill()
            s.wait()
    assert info[0]["version"] == info[1]["version"] == 8  # both replicas see every step
    want = stateful(bundle, xs)
    for i in range(3):
        np.testing.assert_allclose(np.concatenate(got[i]), want[i], atol=TOL)


# ----------------------------------------------------------------- serve --workers N
def test_two_services_sharing_one_sqlite_store_alternating_every_step_equal_one_process(tmp_path):
    """The store of `serve --workers`: two services on one SQLite file (shared lock, not
    exclusive), each stream switching service at every step, give the one-process outputs;
    a stale write from the service that did not see the last step is refused (409)."""
    model = make_model(cell="gru")
    rng = np.random.default_rng(17)
    xs = [rng.normal(size=(9, F)) for _ in range(3)]
    path = tmp_path / "s.db"
    workers = [client_for(model, SQLiteStore(path, shared=True)) for _ in range(2)]
    got = [[] for _ in xs]
    with workers[0] as a, workers[1] as b:
        for t in range(9):
            for i in range(3):
                c = (a, b)[(t + i) % 2]
                r = c.post(f"/v1/streams/s{i}/step", json={"x": xs[i][t : t + 1].tolist()})
                assert r.status_code == 200, r.text
                got[i].append(r.json()["y"])
        assert metric(a.get("/metrics").text, "statefulrnn_streams_known") == 3  # counted
        from statefulrnn.streams.service import StepRequest

        sa = a.app.state.serving.service
        sb = b.app.state.serving.service
        before = sa.info("s0")["version"]
        assert sa.step([StepRequest("s0", xs[0][:1])])[0].status == 200
        sb._held["s0"].version = before  # b read the old version just before a committed
        sb.store.versions = lambda ids: {i: before for i in ids}
        rb = sb.step([StepRequest("s0", xs[0][:1])])[0]
        assert rb.status == 409 and "another replica" in rb.error
    want = stateful(model, xs)
    for i in range(3):
        np.testing.assert_allclose(np.concatenate(got[i]), want[i], atol=TOL)


def test_a_shared_sqlite_store_and_a_lone_writer_refuse_each_other(tmp_path):
    path = tmp_path / "s.db"
    shared = [SQLiteStore(path, shared=True), SQLiteStore(path, shared=True)]
    with pytest.raises(OSError, match=r"in use by another process \(a `serve`"):
        SQLiteStore(path)
    for store in shared:
        store.close()
    alone = SQLiteStore(path)
    with pytest.raises(OSError, match="in use by a process that holds it alone"):
        SQLiteStore(path, shared=True)
    alone.close()


def test_serve_workers_refuses_what_it_cannot_share(tmp_path, capfd):
    from statefulrnn.cli import main
    from statefulrnn.streams.durable import store_meta

    make_model().save(tmp_path / "model")
    model = str(tmp_path / "model")
    assert main(["serve", model, "--workers", "2"]) == 2
    assert "give --state FILE or --redis URL" in capfd.readouterr().err
    db = str(tmp_path / "s.db")
    assert main(["serve", model, "--workers", "2", "--state", db, "--server", "granian"]) == 2
    assert "only uvicorn" in capfd.readouterr().err
    assert main(["serve", model, "--workers", "0", "--state", db]) == 2
    assert "--workers must be >= 1" in capfd.readouterr().err
    other = SQLiteStore(db)  # a store of another model: worker 0 refuses it, once
    other.open(store_meta(make_model(seed=1)))
    other.close()
    assert main(["serve", model, "--workers", "2", "--state", db, "--port", "0"]) == 2
    err = capfd.readouterr().err
    assert err.count("a state means nothing to other weights") == 1


def test_metrics_folders_of_dead_supervisors_are_removed(tmp_path):
    from statefulrnn.streams.workers import METRICS_PREFIX, metrics_folder

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # a pid that no longer runs
    stale = tmp_path / f"{METRICS_PREFIX}{dead.pid}-abc"
    alive = tmp_path / f"{METRICS_PREFIX}{os.getpid()}-def"
    other = tmp_path / "statefulrnn-metrics-notes"
    for folder in (stale, alive, other):
        folder.mkdir()
    new = Path(metrics_folder(str(tmp_path)))
    assert new.name.startswith(f"{METRICS_PREFIX}{os.getpid()}-") and new.is_dir()
    assert not stale.exists() and alive.exists() and other.exists()


def wait_port_closed(port: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        except OSError:
            return
        time.sleep(0.05)
    raise AssertionError(f"port {port} still answers {timeout} s after the server was killed")


@pytest.mark.slow
@pytest.mark.parametrize("store", ["sqlite", "redis"])
def test_serve_workers_share_streams_survive_kill_9_and_stop_cleanly(tmp_path, store, request):
    """`serve --workers 2`: every request on a new connection (the kernel spreads them over
    both workers: the pids /healthz reports prove both answered), each stream's outputs equal
    stateful prediction; a worker killed -9 is replaced, and /metrics from any worker counts
    the steps of all (the dead one's too); kill -9 of the supervisor takes the
    workers with it (the port goes dead), and a new `serve --workers 2` on the same store
    continues every stream; SIGTERM stops supervisor and workers with status 0."""
    import httpx

    store_args = (
        ["--state", str(tmp_path / "s.db")]
        if store == "sqlite"
        else ["--redis", request.getfixturevalue("redis_url"), "--redis-prefix", uuid.uuid4().hex]
    )
    bundle = make_bundle(cell="lstm")
    bundle.save(tmp_path / "model")
    rng = np.random.default_rng(19)
    xs = [rng.normal(3.0, 5.0, size=(12, F)) for _ in range(3)]
    port = free_port()
    args = ["--workers", "2", *store_args]
    got: list[list] = [[] for _ in xs]
    pids: set[int] = set()

    def steps(ts) -> None:
        for t in ts:
            for i in range(3):
                with httpx.Client(timeout=30) as http:  # a new connection each time
                    url = f"http://127.0.0.1:{port}"
                    r = http.post(
                        f"{url}/v1/streams/s{i}/step", json={"x": xs[i][t : t + 1].tolist()}
                    )
                    assert r.status_code == 200, r.text
                    got[i].append(r.json()["y"])
                    pids.add(http.get(f"{url}/healthz").json()["pid"])

    proc = start_server(tmp_path / "model", port, args)
    try:
        steps(range(3))
        first = workers_of(proc.pid)
        assert len(first) == 2 and first <= pids
        os.kill(min(first), signal.SIGKILL)  # a worker crashes: the supervisor starts another
        steps(range(3, 6))
        deadline = time.monotonic() + 60
        while len(workers_of(proc.pid) - first) < 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        now = workers_of(proc.pid)
        assert len(now) == 2 and min(first) not in now
        (new,) = now - first
        answered: set[int] = set()  # the replacement serves (new connections reach both)
        while new not in answered and time.monotonic() < deadline:
            answered.add(httpx.get(f"http://127.0.0.1:{port}/healthz").json()["pid"])
        assert new in answered and workers_of(proc.pid) == now  # and it stays up
        for _ in range(4):  # whichever worker answers counts every worker's steps, the
            text = httpx.get(f"http://127.0.0.1:{port}/metrics").text  # dead one's too
            assert metric(text, "statefulrnn_steps_total") == 18
            assert metric(text, "statefulrnn_streams_known") == 3
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        wait_port_closed(port)  # no worker outlived the supervisor
        proc = start_server(tmp_path / "model", port, args)
        steps(range(6, 12))
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
        wait_port_closed(port)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert len(pids) >= 3  # two workers in each of two runs answered (pids never repeat soon)
    want = stateful(bundle, xs)
    for i in range(3):
        np.testing.assert_allclose(np.concatenate(got[i]), want[i], atol=TOL)
