"""The HTTP and WebSocket face of a StreamService: `make_app(service, ...)` -> an ASGI app.

Built on Starlette (run by uvicorn in `statefulrnn serve`). Why Starlette and not FastAPI:
every request body here is a few arrays of numbers that we must check ourselves anyway
(feature count, NaN, which step and feature is wrong), under a byte limit enforced while the
body is read; FastAPI's pydantic models would add a second validation pass per request and a
dependency, on the path whose cost the service is measured by. Starlette is the ASGI toolkit
FastAPI itself runs on (routing, WebSockets, test client), and our small OpenAPI document is
written out below and served at /openapi.json with a page at /docs.

Endpoints (JSON; ids in paths are strings, in bodies strings or integers):

    POST   /v1/streams/{id}/step   {"x": [[f1..fF], ...] (k steps), "seq"?, "start"?, "end"?,
                                    "model"?}  ->  {"id", "y": [[o1..oO], ...], "version"}
    POST   /v1/step                {"steps": [{"id", "x", ...}, ...]}  ->  {"results": [...]}
                                    (one result per step: {"id", "y", ...} or {"id", "error",
                                    "status"}; a bad step never fails the others)
    POST   /v1/streams/{id}/reset  ->  {"id", "version"}          DELETE /v1/streams/{id}
    GET    /v1/streams/{id}        ->  {"id", "version", "seq", "held"}
    WS     /v1/ws                  send {"id", "x", ...}: one reply {"id", "y", ...} (with
                                    "tag" if sent), in message order; or {"steps": [...]}: one
                                    reply {"results": [...]} as POST /v1/step answers
    GET    /healthz /readyz /metrics (Prometheus) /openapi.json /docs

Order: a stream's steps apply in the order the server receives them. Steps pipelined on one
WebSocket keep their order; a client that moves a stream to another connection (or replica)
waits for the stream's pending answers first. Ids in paths are strings, so the path's "7" and
a body's 7 are different streams.

Errors are JSON {"error": "..."} with 400 (malformed JSON, wrong feature count, NaN), 404
(unknown stream), 409 (seq already applied, another replica won, wrong model), 413 (body over
the limit), 503 (state store failed: nothing applied). Logs are JSON lines.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from statefulrnn.streams.batcher import MicroBatcher
from statefulrnn.streams.metrics import Metrics
from statefulrnn.streams.service import StepRequest, StepResult, StreamService

log = logging.getLogger("statefulrnn.serve")

MAX_DEPTH = 8  # JSON nesting a valid body needs: {"steps": [{"x": [[...]]}]} is 5 deep
STEP_KEYS = {"id", "x", "seq", "start", "end", "model", "tag"}


class BadRequest(Exception):
    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
JSON_HEADER = (b"content-type", b"application/json")


class ClientGone(Exception):
    """The client closed the connection before its request body arrived."""


def dumps(obj: Any) -> bytes:
    """JSON bytes: orjson (~10x the stdlib's speed on our small bodies); the stdlib for what
    orjson refuses (an echoed tag with an integer beyond 64 bits)."""
    try:
        return orjson.dumps(obj)
    except TypeError:
        return json.dumps(obj).encode()


def parse_json(body: bytes) -> Any:
    """A request body as JSON; BadRequest naming what is wrong (and where).

    orjson first (the hot path; it bounds its own nesting, without recursing on the C
    stack); anything it refuses is parsed again by the stdlib, which accepts NaN/Infinity
    (refused later as "not finite", naming the step) and integers beyond 64 bits, and words
    its errors with line and column. Only that path checks the nesting first (json.loads
    recurses), so the byte-by-byte `_depth` scan is off the hot path.
    """
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        pass
    if _depth(body) > MAX_DEPTH:
        raise BadRequest(f"JSON nested more than {MAX_DEPTH} deep")
    if not body.strip():
        raise BadRequest("the request body is empty; send a JSON object")
    try:
        return json.loads(body)
    except UnicodeDecodeError:
        raise BadRequest("the request body is not UTF-8") from None
    except json.JSONDecodeError as err:
        raise BadRequest(
            f"malformed JSON: {err.msg} at line {err.lineno} column {err.colno}"
        ) from None
    except (ValueError, RecursionError) as err:  # e.g. integers too long to convert
        raise BadRequest(f"malformed JSON: {err}") from None


def _depth(body: bytes) -> int:
    """Bracket nesting of a JSON text (ignoring strings), checked before json.loads recurses."""
    if body.count(b"[") + body.count(b"{") <= MAX_DEPTH:
        return 0
    depth = deepest = 0
    in_string = escaped = False
    for c in body:
        if in_string:
            if escaped:
                escaped = False
            elif c == 0x5C:  # backslash
                escaped = True
            elif c == 0x22:
                in_string = False
        elif c == 0x22:
            in_string = True
        elif c in (0x5B, 0x7B):
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > MAX_DEPTH:
                    return deepest
        elif c in (0x5D, 0x7D):
            depth -= 1
    return deepest


def step_request(obj: Any, sid: Any = None, *, where: str = "the body") -> StepRequest:
    """A StepRequest from one step object; BadRequest for a wrong shape of object."""
    if not isinstance(obj, dict):
        raise BadRequest(f'{where} must be a JSON object with "x"; received {type(obj).__name__}')
    unknown = set(obj) - STEP_KEYS
    if unknown:
        raise BadRequest(f"{where} has unknown keys {sorted(unknown)}; known: {sorted(STEP_KEYS)}")
    if "x" not in obj:
        raise BadRequest(f'{where} has no "x" (k steps, each a list of feature values)')
    if sid is None:
        if "id" not in obj:
            raise BadRequest(f'{where} has no "id"')
        sid = obj["id"]
    for flag in ("start", "end"):
        if not isinstance(obj.get(flag, False), bool):
            raise BadRequest(f'{where}: "{flag}" must be true or false')
    return StepRequest(
        sid,
        obj["x"],
        seq=obj.get("seq"),
        start=obj.get("start", False),
        end=obj.get("end", False),
        tag=obj.get("tag"),
    )


def result_json(sid, res: StepResult, tag=None) -> dict:
    out: dict[str, Any] = {"id": sid}
    if tag is not None:
        out["tag"] = tag
    if res.error is not None:
        out["error"], out["status"] = res.error, res.status
        return out
    assert res.y is not None  # no error: an answer (for the type checker)
    out["y"] = res.y.tolist()
    out["version"] = res.version
    if res.replayed:
        out["replayed"] = True
    return out


def quiet_gc() -> None:
    """Keep Python's cyclic garbage collector off the request path.

    What exists at start (torch, the model, the modules: ~10^6 objects) is moved out of the
    collector's generations (`gc.freeze`), and a young collection runs every 50,000
    allocations instead of 700. Profiled under 1,000 one-step HTTP clients: the collector
    took 23% of the server's CPU, most of it walking the start-up objects again and again.
    Reference counting still frees everything acyclic at once; cycles are still collected.
    """
    gc.collect()
    gc.freeze()
    _, second, third = gc.get_threshold()
    gc.set_threshold(50_000, second, third)


class App:
    """State of one served model: the service, its batcher, limits, metrics (see module doc)."""

    def __init__(
        self,
        service: StreamService,
        *,
        delay: float = 0.002,
        max_batch: int = 4096,
        max_body: int = 1 << 20,
        idle_timeout: float | None = None,
        model_name: str = "",
    ):
        self.service, self.max_body, self.idle_timeout = service, max_body, idle_timeout
        self.metrics = Metrics(service)
        self.batcher = MicroBatcher(
            service, delay=delay, max_batch=max_batch, on_batch=self.metrics.batch
        )
        model = service.pool.model
        self.identity = model.identity()
        self.description = {
            "model": model_name,
            "kind": model.kind,
            "identity": self.identity,
            "inputs": model.input_size,
            "outputs": model.output_size,
            "store": getattr(service.store, "where", None),
        }
        self._idle_task: asyncio.Task | None = None

    # ------------------------------------------------------------- lifecycle
    @contextlib.asynccontextmanager
    async def lifespan(self, app):
        quiet_gc()
        await self.batcher.start()
        if self.idle_timeout:
            self._idle_task = asyncio.create_task(self._evict_idle())
        log.info("serving", extra={"fields": self.description})
        try:
            yield
        finally:
            if self._idle_task is not None:
                self._idle_task.cancel()
            await self.batcher.stop()
            self.service.close()
            log.info("stopped", extra={"fields": {"streams_held": self.service.held}})

    async def _evict_idle(self) -> None:
        timeout = self.idle_timeout
        if not timeout:
            return  # started only with an idle timeout
        while True:
            await asyncio.sleep(max(timeout / 4, 0.05))
            try:
                n = await self.batcher.run_sync(self.service.evict_idle, timeout)
            except Exception as err:  # the store may be down; try again later
                self.metrics.store_error()
                log.warning("idle eviction failed", extra={"fields": {"error": str(err)}})
                continue
            if n:
                log.info("evicted idle streams", extra={"fields": {"streams": n}})

    # ------------------------------------------------------------- hot path (raw ASGI)
    # The step endpoints and the WebSocket are served below Starlette's routing and Request/
    # Response objects (see `ServeApp`): per request that machinery cost more CPU than the
    # step itself (profiled: ~60% of the server's samples under 1,000 one-step clients).
    async def read_body(self, scope: Scope, receive: Receive) -> bytes:
        """The request body, refused (413) as soon as it is over --max-body."""
        for name, value in scope["headers"]:
            if name == b"content-length":
                if value.isdigit() and int(value) > self.max_body:
                    raise BadRequest(
                        f"the body has {int(value)} bytes; the limit is {self.max_body} "
                        "(--max-body)",
                        413,
                    )
                break
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ClientGone
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                raise BadRequest(
                    f"the body is over the limit of {self.max_body} bytes (--max-body)", 413
                )
            chunks.append(chunk)
            more = message.get("more_body", False)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def check_model(self, obj: dict, where: str) -> None:
        want = obj.get("model") if isinstance(obj, dict) else None
        if want is not None and not (
            isinstance(want, str) and want and self.identity.startswith(want)
        ):
            raise BadRequest(
                f"{where} asks for model {str(want)[:16]!r}, but this server serves "
                f"{self.identity[:12]} ({self.description['kind']}): its stream states mean "
                "nothing to other weights",
                409,
            )

    def enqueue(self, requests: list[StepRequest]) -> asyncio.Future:
        """Queue requests for the next micro-batch now (their order is the arrival order)."""
        return self.batcher.enqueue(requests)

    def done(self, requests: list[StepRequest], results: list[StepResult], t0: float) -> None:
        """Metrics and logs of answered requests queued at `t0` (the batch counted them)."""
        self.metrics.waited(time.perf_counter() - t0)
        for req, res in zip(requests, results):
            if res.status >= 500:
                self.metrics.store_error()
                log.error("step failed", extra={"fields": {"id": req.sid, "error": res.error}})

    async def step(self, requests: list[StepRequest]) -> list[StepResult]:
        t0 = time.perf_counter()
        results = await self.enqueue(requests)
        self.done(requests, results, t0)
        return results

    async def stream_step(self, sid: str, scope: Scope, receive: Receive, send: Send) -> None:
        """POST /v1/streams/{sid}/step."""
        try:
            obj = parse_json(await self.read_body(scope, receive))
            self.check_model(obj, "the body")
            if isinstance(obj, dict) and "id" in obj and obj["id"] != sid:
                raise BadRequest(f"the body's id {obj['id']!r} differs from the path's {sid!r}")
            req = step_request(obj, sid)
        except BadRequest as err:
            return await reply(send, err.status, self.refuse("step", err, sid))
        except ClientGone:
            return
        res = (await self.step([req]))[0]
        if res.error is not None:
            refused = BadRequest(res.error, res.status)
            return await reply(send, res.status, self.refuse("step", refused, sid))
        await reply(send, 200, dumps(result_json(sid, res)))

    def many(self, obj: Any, where: str) -> tuple[list[StepRequest], list[int], list]:
        """The step requests of a {"steps": [...]} object: (requests, their places, results
        with the bad steps' errors in place)."""
        if not isinstance(obj, dict) or not isinstance(obj.get("steps"), list):
            raise BadRequest(f'{where}: expected {{"steps": [{{"id": ..., "x": [[...]]}}, ...]}}')
        self.check_model(obj, where)
        requests, at = [], []
        out: list[dict[str, Any] | None] = [None] * len(obj["steps"])
        for n, item in enumerate(obj["steps"]):
            try:
                self.check_model(item, f"steps[{n}]")
                requests.append(step_request(item, where=f"steps[{n}]"))
                at.append(n)
            except BadRequest as err:
                bad = {"id": item.get("id") if isinstance(item, dict) else None}
                if isinstance(item, dict) and item.get("tag") is not None:
                    bad["tag"] = item["tag"]
                out[n] = {**bad, "error": str(err), "status": err.status}
        return requests, at, out

    def fill(self, out: list, at: list[int], requests, results) -> dict[str, Any]:
        for n, req, res in zip(at, requests, results):
            out[n] = result_json(req.sid, res, req.tag)
        return {"results": out}

    async def many_step(self, scope: Scope, receive: Receive, send: Send) -> None:
        """POST /v1/step."""
        try:
            requests, at, out = self.many(
                parse_json(await self.read_body(scope, receive)), "the body"
            )
        except BadRequest as err:
            return await reply(send, err.status, self.refuse("steps", err))
        except ClientGone:
            return
        results = await self.step(requests) if requests else []
        await reply(send, 200, dumps(self.fill(out, at, requests, results)))

    async def one_stream(self, what: str, request: Request, fn, answer) -> Response:
        """Run `fn(sid)` between micro-batches: 404 for an unknown stream, 503 if the store fails."""
        sid = request.path_params["sid"]
        try:
            value = await self.batcher.run_sync(fn, sid)
        except KeyError:
            return self.refused(what, BadRequest(self.unknown(sid), 404), sid)
        except Exception as err:
            self.metrics.store_error()
            where = self.description["store"]
            return self.refused(what, BadRequest(f"state store error ({where}): {err}", 503), sid)
        return JSONResponse(answer(sid, value))

    async def reset(self, request: Request) -> Response:
        return await self.one_stream(
            "reset", request, self.service.reset, lambda sid, v: {"id": sid, "version": v}
        )

    async def delete(self, request: Request) -> Response:
        return await self.one_stream(
            "delete", request, self.service.drop, lambda sid, _: {"id": sid, "deleted": True}
        )

    async def get(self, request: Request) -> Response:
        return await self.one_stream("get", request, self.service.info, lambda _, info: info)

    async def websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        """WS /v1/ws: a step object per message (one reply per message, in message order), or
        {"steps": [...]} (one {"results": [...]} reply, like POST /v1/step)."""
        if (await receive())["type"] != "websocket.connect":
            return
        await send({"type": "websocket.accept"})
        replies: asyncio.Queue = asyncio.Queue()  # (future, t0, requests, build) in order

        async def put(obj: Any) -> None:
            with contextlib.suppress(OSError, RuntimeError):  # the client went away
                await send({"type": "websocket.send", "text": dumps(obj).decode()})

        async def sender() -> None:
            while True:
                item = await replies.get()
                if item is None:
                    return
                fut, t0, requests, build = item
                if fut is None:  # an error answered at once, in its place in the order
                    await put(build)
                    continue
                try:
                    results = await fut
                except Exception as err:  # the server is stopping
                    await put({"error": str(err), "status": 503})
                    continue
                self.done(requests, results, t0)
                await put(build(results))

        task = asyncio.create_task(sender())
        try:
            while True:
                message = await receive()
                if message["type"] == "websocket.disconnect":
                    break
                text = message.get("text")
                data = text.encode() if text is not None else message.get("bytes") or b""
                obj: Any = None
                try:
                    if len(data) > self.max_body:
                        raise BadRequest(f"message over the limit of {self.max_body} bytes", 413)
                    obj = parse_json(data)
                    if isinstance(obj, dict) and "steps" in obj:
                        requests, at, out = self.many(obj, "the message")
                        tag = obj.get("tag")
                        build = self._build_many(out, at, requests, tag)
                    else:
                        self.check_model(obj, "the message")
                        requests = [step_request(obj, where="the message")]
                        build = self._build_one(requests[0])
                except BadRequest as err:
                    self.refuse("ws", err)
                    sid = obj.get("id") if isinstance(obj, dict) and "steps" not in obj else None
                    bad: dict[str, Any] = {"error": str(err), "status": err.status}
                    if sid is not None:
                        bad["id"] = sid
                    if isinstance(obj, dict) and obj.get("tag") is not None:
                        bad["tag"] = obj["tag"]
                    replies.put_nowait((None, 0.0, None, bad))
                    continue
                if requests:
                    fut = self.enqueue(requests)
                    replies.put_nowait((fut, time.perf_counter(), requests, build))
                else:  # a steps message whose steps were all refused
                    replies.put_nowait((None, 0.0, None, build([])))
        finally:
            replies.put_nowait(None)
            await task

    def _build_one(self, req: StepRequest):
        return lambda results: result_json(req.sid, results[0], req.tag)

    def _build_many(self, out, at, requests, tag):
        def build(results):
            body = self.fill(out, at, requests, results)
            if tag is not None:
                body["tag"] = tag
            return body

        return build

    async def healthz(self, request: Request) -> Response:
        # the pid tells which process answered (`serve --workers N` runs N of them)
        return JSONResponse({"status": "ok", "pid": os.getpid()})

    async def readyz(self, request: Request) -> Response:
        if not self.batcher.running:
            return JSONResponse({"status": "starting"}, status_code=503)
        try:
            await self.batcher.run_sync(self.service.ping)
        except Exception as err:
            return JSONResponse({"status": "store unavailable", "error": str(err)}, status_code=503)
        return JSONResponse({"status": "ready", **self.description})

    async def metrics_page(self, request: Request) -> Response:
        body, content_type = self.metrics.render()
        return Response(body, media_type=content_type)

    async def openapi(self, request: Request) -> Response:
        return JSONResponse(openapi_document(self.description))

    async def docs(self, request: Request) -> Response:
        return HTMLResponse(docs_page(openapi_document(self.description)))

    # ------------------------------------------------------------- errors
    def unknown(self, sid) -> str:
        return f"no stream {sid!r}: it has never been stepped, or was deleted or ended"

    def refuse(self, what: str, err: BadRequest, sid=None) -> bytes:
        """Count and log a refused request; its JSON body {"error": ...}."""
        self.metrics.refused(err.status)
        log.info(
            "refused",
            extra={
                "fields": {"endpoint": what, "id": sid, "status": err.status, "error": str(err)}
            },
        )
        return dumps({"error": str(err)})

    def refused(self, what: str, err: BadRequest, sid=None) -> Response:
        return Response(self.refuse(what, err, sid), err.status, media_type="application/json")


async def reply(send: Send, status: int, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [JSON_HEADER, (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


class ServeApp:
    """The ASGI app: the step endpoints and the WebSocket straight to `App`, the rest through
    Starlette (routing, lifespan). `.state.serving` is the `App`."""

    def __init__(self, serving: App, starlette: Starlette):
        self.serving, self.starlette = serving, starlette
        self.state = starlette.state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http" and scope["method"] == "POST":
            path = scope["path"]
            if path.startswith("/v1/streams/") and path.endswith("/step"):
                sid = path[12:-5]
                if sid and "/" not in sid:
                    return await self.serving.stream_step(sid, scope, receive, send)
            elif path == "/v1/step":
                return await self.serving.many_step(scope, receive, send)
        elif kind == "websocket" and scope["path"] == "/v1/ws":
            return await self.serving.websocket(scope, receive, send)
        await self.starlette(scope, receive, send)


def make_app(service: StreamService, **kw) -> ServeApp:
    """The ASGI app serving `service` (keyword arguments: see `App`)."""
    state = App(service, **kw)
    routes = [
        Route("/v1/streams/{sid}/reset", state.reset, methods=["POST"]),
        Route("/v1/streams/{sid}", state.get, methods=["GET"]),
        Route("/v1/streams/{sid}", state.delete, methods=["DELETE"]),
        Route("/healthz", state.healthz),
        Route("/readyz", state.readyz),
        Route("/metrics", state.metrics_page),
        Route("/openapi.json", state.openapi),
        Route("/docs", state.docs),
    ]
    app = Starlette(routes=routes, lifespan=state.lifespan)
    app.state.serving = state
    return ServeApp(state, app)


# ----------------------------------------------------------------- OpenAPI
def openapi_document(description: dict) -> dict:
    """The API as OpenAPI 3.1 (hand-written: it is small, and it is the contract)."""
    matrix = {"type": "array", "items": {"type": "array", "items": {"type": "number"}}}
    step = {
        "type": "object",
        "required": ["x"],
        "properties": {
            "id": {"oneOf": [{"type": "string"}, {"type": "integer"}]},
            "x": {**matrix, "description": f"k steps x {description['inputs']} features"},
            "seq": {
                "type": "integer",
                "minimum": 0,
                "description": "increasing per stream; a retried seq is answered, not re-applied",
            },
            "start": {"type": "boolean", "description": "zero the state before these steps"},
            "end": {"type": "boolean", "description": "delete the stream after these steps"},
            "model": {
                "type": "string",
                "description": "prefix of the model identity the client expects",
            },
        },
    }
    result = {
        "type": "object",
        "properties": {
            "id": {},
            "y": {**matrix, "description": f"k rows x {description['outputs']} outputs"},
            "version": {"type": "integer"},
            "replayed": {"type": "boolean"},
            "error": {"type": "string"},
            "status": {"type": "integer"},
        },
    }
    error = {"type": "object", "properties": {"error": {"type": "string"}}}

    def answer(schema, *codes):
        out = {"200": {"description": "ok", "content": {"application/json": {"schema": schema}}}}
        for code in codes:
            out[str(code)] = {
                "description": "error",
                "content": {"application/json": {"schema": error}},
            }
        return out

    sid = [{"name": "sid", "in": "path", "required": True, "schema": {"type": "string"}}]
    body = lambda schema: {"required": True, "content": {"application/json": {"schema": schema}}}  # noqa: E731
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "statefulrnn serve",
            "version": "1",
            "description": f"Stateful streams of model {description['identity'][:12]} ({description['kind']}).",
        },
        "paths": {
            "/v1/streams/{sid}/step": {
                "post": {
                    "summary": "Step one stream by k steps",
                    "parameters": sid,
                    "requestBody": body(step),
                    "responses": answer(result, 400, 409, 413, 503),
                }
            },
            "/v1/step": {
                "post": {
                    "summary": "Step many streams",
                    "requestBody": body(
                        {
                            "type": "object",
                            "properties": {"steps": {"type": "array", "items": step}},
                        }
                    ),
                    "responses": answer(
                        {
                            "type": "object",
                            "properties": {"results": {"type": "array", "items": result}},
                        },
                        400,
                        413,
                    ),
                }
            },
            "/v1/streams/{sid}/reset": {
                "post": {
                    "summary": "Zero a stream's state",
                    "parameters": sid,
                    "responses": answer(error, 404, 503),
                }
            },
            "/v1/streams/{sid}": {
                "get": {
                    "summary": "A stream's version and last seq",
                    "parameters": sid,
                    "responses": answer(error, 404),
                },
                "delete": {
                    "summary": "Forget a stream",
                    "parameters": sid,
                    "responses": answer(error, 404, 503),
                },
            },
            "/healthz": {"get": {"summary": "The process is up", "responses": answer(error)}},
            "/readyz": {
                "get": {"summary": "The model and store are ready", "responses": answer(error, 503)}
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics",
                    "responses": {"200": {"description": "text format"}},
                }
            },
        },
        "x-websocket": {
            "/v1/ws": 'send a step object (one reply) or {"steps": [...]} (one {"results": [...]}'
            " reply) per text message; replies come in message order"
        },
    }


def docs_page(doc: dict) -> str:
    """A plain HTML page of the API (no scripts fetched from elsewhere)."""
    import html

    rows = []
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            codes = ", ".join(op["responses"])
            rows.append(
                f"<tr><td>{method.upper()}</td><td><code>{html.escape(path)}</code></td><td>{html.escape(op['summary'])}</td><td>{codes}</td></tr>"
            )
    ws = "".join(
        f"<tr><td>WS</td><td><code>{p}</code></td><td>{html.escape(t)}</td><td></td></tr>"
        for p, t in doc["x-websocket"].items()
    )
    return (
        f"<!doctype html><title>{html.escape(doc['info']['title'])}</title>"
        f"<h1>{html.escape(doc['info']['title'])}</h1><p>{html.escape(doc['info']['description'])}</p>"
        "<table border=1 cellpadding=4><tr><th></th><th>path</th><th>what</th><th>status codes</th></tr>"
        + "".join(rows)
        + ws
        + "</table><p>The full document: <a href='/openapi.json'>/openapi.json</a></p>"
    )


class JsonLogFormatter(logging.Formatter):
    """One JSON object per log line: time, level, message, and the record's `fields`."""

    def format(self, record: logging.LogRecord) -> str:
        out = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        out.update(getattr(record, "fields", {}) or {})
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)
