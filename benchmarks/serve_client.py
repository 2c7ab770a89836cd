"""A lean closed-loop load client for `statefulrnn serve` (one process; bench_serve.py runs several).

    python benchmarks/serve_client.py --port P --mode http --first 0 --count 500 \\
        --start-at T --warmup 1 --seconds 5 --out lat.json

Why not httpx/websockets: at 20,000 requests/s on the same 2 cores as the server, the client's
own CPU decides the result. httpx spends ~5 ms of CPU per request under 1,000 concurrent
clients (measured by the previous version of bench_serve.py), so it measured itself. This
client is asyncio protocols (uvloop's loop when installed): every request's bytes are built
once, a response is found by its Content-Length (HTTP/1.1 keep-alive) or its frame length
(WebSocket, client frames masked with a zero key as RFC 6455 allows), and the next request
of that connection is sent from the same callback. Loads (one stream per id; ids are
`{prefix}{first}..{prefix}{first+count-1}`):

- `http`:    one connection per stream, `POST /v1/streams/{id}/step` one step at a time.
- `ws`:      `--connections` WebSockets; one message = one step of one stream; each stream
             has one step in flight (its next is sent when its answer arrives).
- `ws-many`: one WebSocket per `--connections`; one message = one step of each of its
             streams ({"steps": [...]}), answered by one {"results": [...]} message.
- `http-many`: `--connections` connections, each `POST /v1/step` with one step of each of its
             streams.

Latencies are kept only for requests sent within [start-at + warmup, start-at + warmup +
seconds); the count of stream-steps answered in that window, this process's CPU seconds over
it, the latencies (microseconds) and the first error go to --out as JSON. Bounded: it stops at
the window's end (plus the answers in flight, at most --drain seconds).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import struct
import time

try:  # a faster event loop when installed (uvicorn[standard] brings it)
    import uvloop
except ImportError:  # pragma: no cover - the plain asyncio loop works, slower
    uvloop = None

WINDOW = {"start": 0.0, "end": 0.0, "stop": 0.0}


class Tally:
    def __init__(self) -> None:
        self.steps = 0
        self.latencies: list[int] = []
        self.error: str | None = None

    def answered(self, sent: float, now: float, steps: int) -> None:
        if WINDOW["start"] <= sent < WINDOW["end"]:
            self.steps += steps
            self.latencies.append(int((now - sent) * 1e6))


def http_request(path: str, body: bytes) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\n\r\n"
    ).encode() + body


class HttpConn(asyncio.Protocol):
    """Keep-alive HTTP/1.1, one request in flight; `steps` stream-steps per request."""

    def __init__(self, request: bytes, steps: int, tally: Tally, done: asyncio.Future):
        self.request, self.steps, self.tally, self.done = request, steps, tally, done
        self.buf = b""
        self.sent = 0.0

    def connection_made(self, transport) -> None:
        self.transport = transport

    def go(self) -> None:
        self.sent = time.perf_counter()
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data
        head_end = buf.find(b"\r\n\r\n")
        if head_end < 0:
            self.buf = buf
            return
        head = buf[:head_end].lower()
        at = head.find(b"content-length:")
        length = 0
        if at >= 0:
            cut = head.find(b"\r\n", at)
            length = int(head[at + 15 : cut if cut >= 0 else len(head)])
        if len(buf) < head_end + 4 + length:
            self.buf = buf
            return
        now = time.perf_counter()
        self.buf = buf[head_end + 4 + length :]
        if not head.startswith(b"http/1.1 200"):
            if self.tally.error is None:
                self.tally.error = buf[: head_end + 4 + length].decode(errors="replace")[-300:]
        else:
            self.tally.answered(self.sent, now, self.steps)
        if now < WINDOW["stop"] and self.tally.error is None:
            self.go()
        elif not self.done.done():
            self.done.set_result(None)

    def connection_lost(self, exc) -> None:
        if not self.done.done():
            if self.tally.error is None and time.perf_counter() < WINDOW["stop"]:
                self.tally.error = f"connection lost: {exc}"
            self.done.set_result(None)


def ws_frame(payload: bytes) -> bytes:
    """A masked client text frame; the zero mask leaves the payload as it is."""
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x81, 0x80 | n)
    elif n < 65536:
        head = struct.pack("!BBH", 0x81, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x81, 0x80 | 127, n)
    return head + b"\0\0\0\0" + payload


class WsConn(asyncio.Protocol):
    """A WebSocket carrying several streams; `on_message(text)` handles each server frame."""

    def __init__(self, host_port: str, done: asyncio.Future):
        self.host_port, self.done = host_port, done
        self.buf = b""
        self.open = False
        self.opened: asyncio.Future = asyncio.get_running_loop().create_future()
        self.on_message = None

    def connection_made(self, transport) -> None:
        self.transport = transport
        key = base64.b64encode(os.urandom(16)).decode()
        transport.write(
            (
                f"GET /v1/ws HTTP/1.1\r\nhost: {self.host_port}\r\nupgrade: websocket\r\n"
                f"connection: Upgrade\r\nsec-websocket-key: {key}\r\n"
                "sec-websocket-version: 13\r\n\r\n"
            ).encode()
        )

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data
        if not self.open:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                self.buf = buf
                return
            if not buf.startswith(b"HTTP/1.1 101"):
                self.opened.set_exception(RuntimeError(buf[:end].decode(errors="replace")))
                return
            self.open = True
            buf = buf[end + 4 :]
            self.opened.set_result(None)
        at, size = 0, len(buf)
        while size - at >= 2:
            n = buf[at + 1] & 0x7F
            head = 2
            if n == 126:
                if size - at < 4:
                    break
                n = struct.unpack_from("!H", buf, at + 2)[0]
                head = 4
            elif n == 127:
                if size - at < 10:
                    break
                n = struct.unpack_from("!Q", buf, at + 2)[0]
                head = 10
            if size - at < head + n:
                break
            opcode = buf[at] & 0x0F
            payload = buf[at + head : at + head + n]
            at += head + n
            if opcode == 1 and self.on_message is not None:
                self.on_message(payload)
            elif opcode == 8:
                self.transport.close()
        self.buf = buf[at:]

    def connection_lost(self, exc) -> None:
        if not self.done.done():
            self.done.set_result(None)


async def run(args) -> dict:
    loop = asyncio.get_running_loop()
    tally = Tally()
    ids = [f"{args.prefix}{i}" for i in range(args.first, args.first + args.count)]
    x = json.dumps([[0.5] * args.features]).encode()
    done_all: list[asyncio.Future] = []
    conns: list = []
    if args.mode == "http":
        for sid in ids:
            done = loop.create_future()
            req = http_request(f"/v1/streams/{sid}/step", b'{"x":' + x + b"}")
            _, proto = await loop.create_connection(
                lambda req=req, done=done: HttpConn(req, 1, tally, done), "127.0.0.1", args.port
            )
            conns.append(proto)
            done_all.append(done)
    elif args.mode == "http-many":
        for part in split(ids, args.connections):
            done = loop.create_future()
            body = json.dumps({"steps": [{"id": s, "x": [[0.5] * args.features]} for s in part]})
            req, n = http_request("/v1/step", body.encode()), len(part)
            _, proto = await loop.create_connection(
                lambda req=req, n=n, done=done: HttpConn(req, n, tally, done),
                "127.0.0.1",
                args.port,
            )
            conns.append(proto)
            done_all.append(done)
    else:
        for part in split(ids, args.connections):
            done = loop.create_future()
            _, proto = await loop.create_connection(
                lambda done=done: WsConn(f"127.0.0.1:{args.port}", done), "127.0.0.1", args.port
            )
            await proto.opened
            conns.append((proto, part))
            done_all.append(done)
    now = time.time()
    await asyncio.sleep(max(0.0, args.start_at - now))
    t0 = time.perf_counter()
    WINDOW["start"] = t0 + args.warmup
    WINDOW["end"] = WINDOW["start"] + args.seconds
    WINDOW["stop"] = WINDOW["end"]
    cpu0 = [0.0]

    def mark_cpu() -> None:
        cpu0[0] = time.process_time()

    loop.call_at(loop.time() + args.warmup, mark_cpu)
    if args.mode in ("http", "http-many"):
        for proto in conns:
            proto.go()
    elif args.mode == "ws":
        for proto, part in conns:
            start_ws_per_step(proto, part, x, tally)
    else:
        for proto, part in conns:
            start_ws_many(proto, part, args.features, tally)
    cpu1 = [0.0]

    def stop_cpu() -> None:
        cpu1[0] = time.process_time()

    loop.call_at(loop.time() + args.warmup + args.seconds, stop_cpu)
    await asyncio.sleep(args.warmup + args.seconds)
    if args.mode not in ("http", "http-many"):
        for proto, _ in conns:  # the WebSocket loads stop sending at the window's end
            proto.transport.write(ws_close())
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(asyncio.gather(*done_all), args.drain)
    for c in conns:
        (c[0] if isinstance(c, tuple) else c).transport.close()
    return {
        "mode": args.mode,
        "streams": len(ids),
        "steps": tally.steps,
        "seconds": args.seconds,
        "cpu_seconds": (cpu1[0] or time.process_time()) - cpu0[0],
        "latencies_us": tally.latencies,
        "error": tally.error,
    }


def ws_close() -> bytes:
    return struct.pack("!BB", 0x88, 0x80 | 2) + b"\0\0\0\0" + struct.pack("!H", 1000)


def start_ws_per_step(proto: WsConn, part: list[str], x: bytes, tally: Tally) -> None:
    frames = {s: ws_frame(b'{"id":"' + s.encode() + b'","x":' + x + b"}") for s in part}
    sent: dict[str, float] = {}
    write = proto.transport.write
    loads = json.loads

    def on_message(payload: bytes) -> None:
        now = time.perf_counter()
        reply = loads(payload)
        sid = reply.get("id")
        if "error" in reply and tally.error is None:
            tally.error = str(reply)[:300]
        t = sent.pop(sid, None)
        if t is None:
            return
        tally.answered(t, now, 1)
        if now < WINDOW["stop"] and tally.error is None:
            sent[sid] = time.perf_counter()
            write(frames[sid])

    proto.on_message = on_message
    for s in part:
        sent[s] = time.perf_counter()
        write(frames[s])


def start_ws_many(proto: WsConn, part: list[str], features: int, tally: Tally) -> None:
    body = json.dumps({"steps": [{"id": s, "x": [[0.5] * features]} for s in part]}).encode()
    frame = ws_frame(body)
    state = {"sent": 0.0}

    def on_message(payload: bytes) -> None:
        now = time.perf_counter()
        if b'"error"' in payload and tally.error is None:
            tally.error = payload[:300].decode(errors="replace")
        tally.answered(state["sent"], now, len(part))
        if now < WINDOW["stop"] and tally.error is None:
            state["sent"] = time.perf_counter()
            proto.transport.write(frame)

    proto.on_message = on_message
    state["sent"] = time.perf_counter()
    proto.transport.write(frame)


def split(ids: list[str], parts: int) -> list[list[str]]:
    parts = max(1, min(parts, len(ids)))
    return [ids[i::parts] for i in range(parts)]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--mode", choices=["http", "http-many", "ws", "ws-many"], default="http")
    p.add_argument("--prefix", default="s")
    p.add_argument("--first", type=int, default=0)
    p.add_argument("--count", type=int, default=100)
    p.add_argument("--connections", type=int, default=1, help="ws, ws-many, http-many")
    p.add_argument("--features", type=int, default=1)
    p.add_argument("--start-at", type=float, default=0.0, help="epoch seconds (all clients)")
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--drain", type=float, default=10.0)
    p.add_argument("--out", required=True)
    args = p.parse_args()
    res = uvloop.run(run(args)) if uvloop is not None else asyncio.run(run(args))
    res["uvloop"] = uvloop is not None
    with open(args.out, "w") as f:
        json.dump(res, f)


if __name__ == "__main__":
    main()
