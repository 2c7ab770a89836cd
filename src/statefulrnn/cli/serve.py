"""`statefulrnn serve MODEL_DIR`: the model's streams over HTTP and WebSocket.

Thin: options -> StreamPool + state store -> StreamService -> streams/http.py's app -> the
server (streams/server.py).
"""

from __future__ import annotations

import logging
import sys

from statefulrnn.cli import options as o

# its line in `statefulrnn --help`
HELP = "serve streams over HTTP/WebSocket with micro-batching and durable state"
DESCRIPTION = """\
Serve a model's streams over HTTP and WebSocket, in your units (x scaled as in training, y
scaled back and through the loss's link, as `statefulrnn predict` answers). Each stream (any
id) keeps its recurrent state between requests; concurrent requests are micro-batched into one batched step, and each
batch's new states are committed to the state store before any of its answers is sent.

  POST /v1/streams/ID/step  {"x": [[0.5, 1.2], [0.7, 1.0]]}  ->  {"y": [[...], [...]], ...}
  POST /v1/step             {"steps": [{"id": "a", "x": [[...]]}, ...]}
  POST /v1/streams/ID/reset   DELETE /v1/streams/ID   GET /v1/streams/ID   WS /v1/ws
  GET  /healthz /readyz /metrics /docs /openapi.json

State: --state FILE (SQLite: this serve's processes only), --redis URL (shared by replicas;
versioned so two replicas never both advance a stream), or neither (memory: lost at exit).

--workers N runs N server processes on one port and one store (--state or --redis), for N
cores: one process uses about one core (docs/serve.md has the numbers).
"""

EPILOG = """\
examples:
  statefulrnn serve models/elec --state streams.db
  statefulrnn serve models/elec --redis redis://127.0.0.1:6379/0 --port 8001
  statefulrnn serve models/elec --state streams.db --workers 2      # two processes, one port
  curl -s localhost:8000/v1/streams/s1/step -d '{"x": [[0.5, 1.2]]}'
"""


def add_parser(subparsers) -> None:
    p = o.add_command(subparsers, "serve", HELP, DESCRIPTION, EPILOG)
    p.add_argument("model", metavar="MODEL_DIR", help="a saved model folder (model.json inside)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (default: 8000; 0: any free)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--state", metavar="FILE", help="SQLite state store (created if missing)")
    where.add_argument("--redis", metavar="URL", help="Redis state store, e.g. redis://host:6379/0")
    p.add_argument("--redis-prefix", default="statefulrnn", help="key prefix in Redis")
    p.add_argument(
        "--sync", choices=["full", "normal"], default="full", help="--state durability (see stream)"
    )
    p.add_argument(
        "--capacity", type=int, metavar="N", help="at most N states in memory (the store keeps all)"
    )
    p.add_argument(
        "--batch-delay-ms",
        type=float,
        default=2.0,
        metavar="MS",
        help="collect requests for up to MS ms into one batch (default: 2)",
    )
    p.add_argument("--max-batch", type=int, default=4096, metavar="N", help="steps per batch")
    p.add_argument(
        "--max-body",
        type=int,
        default=1 << 20,
        metavar="BYTES",
        help="largest request body or WebSocket message (default: 1 MiB)",
    )
    p.add_argument(
        "--idle-timeout",
        type=float,
        metavar="S",
        help="drop streams unused for S seconds from memory (their state stays in the store)",
    )
    p.add_argument(
        "--server",
        choices=["uvicorn", "granian"],
        default="uvicorn",
        help="the HTTP server (default: uvicorn; granian serves one-step HTTP requests 7-27%% "
        "faster but one-step WebSocket messages 1.6-2.7x slower: docs/serve.md)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="server processes on one port, sharing --state or --redis (default: 1; about one "
        "core each; uvicorn only)",
    )
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.set_defaults(run=run)


def check_workers(args) -> None:
    """--workers needs a store the workers share, and uvicorn (granian measured slower)."""
    if args.workers <= 1:
        return
    if not (args.state or args.redis):
        raise ValueError(
            f"--workers {args.workers}: the workers share stream states through the store; "
            "give --state FILE or --redis URL (in memory, each worker would have its own streams)"
        )
    if args.server != "uvicorn":
        raise ValueError(
            f"--workers with --server {args.server}: only uvicorn (two granian processes served "
            "fewer one-step requests than two uvicorn ones here: docs/serve.md)"
        )


def build(args):
    """(service, app) for these options; raises OSError/ValueError with a clear message."""
    from statefulrnn.bundle import load_bundle
    from statefulrnn.streams import StreamPool
    from statefulrnn.streams.durable import MemoryStore, SQLiteStore, StateStore
    from statefulrnn.streams.http import make_app
    from statefulrnn.streams.service import StreamService

    check_workers(args)
    for name in ("capacity", "max_batch", "max_body", "workers"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1; received {value}")
    if args.batch_delay_ms < 0:
        raise ValueError(f"--batch-delay-ms must be >= 0; received {args.batch_delay_ms}")
    if args.capacity is not None and not (args.state or args.redis):
        raise ValueError(
            "--capacity evicts streams from memory; give --state or --redis to keep them"
        )
    bundle = load_bundle(args.model)  # the network and the user's units (scaling, link)
    store: StateStore
    if args.state:
        store = SQLiteStore(args.state, synchronous=args.sync, shared=args.workers > 1)
    elif args.redis:
        from statefulrnn.streams.redis_store import RedisStore

        store = RedisStore(args.redis, prefix=args.redis_prefix)
    else:
        store = MemoryStore()
    try:
        service = StreamService(StreamPool(bundle, capacity=args.capacity), store)
    except BaseException:
        store.close()
        raise
    app = make_app(
        service,
        delay=args.batch_delay_ms / 1000,
        max_batch=args.max_batch,
        max_body=args.max_body,
        idle_timeout=args.idle_timeout,
        model_name=str(args.model),
    )
    return service, app


def run(args, worker: dict | None = None) -> int:
    try:
        import orjson  # noqa: F401
        import starlette  # noqa: F401

        if args.server == "uvicorn":
            import uvicorn  # noqa: F401
        else:
            import granian  # noqa: F401

        from statefulrnn.streams.http import JsonLogFormatter
        from statefulrnn.streams.server import run_granian, uvicorn_config
    except ImportError as err:
        print(
            f"serve: {err.name} is not installed; install the server packages: pip install "
            "starlette granian uvicorn httptools uvloop orjson websockets prometheus-client",
            file=sys.stderr,
        )
        return 2
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLogFormatter())
    logger = logging.getLogger("statefulrnn.serve")
    logger.handlers[:] = [handler]
    logger.setLevel(args.log_level.upper())
    logger.propagate = False
    if args.workers > 1 and worker is None:
        return supervise(args, logger)
    try:
        _, app = build(args)
    except (OSError, ValueError, TypeError) as err:
        print(f"serve: {err}", file=sys.stderr)
        return 2
    if worker is not None:  # one of `--workers N`: its own socket on the port
        import uvicorn

        from statefulrnn.streams.workers import listen, worker_ready

        worker_ready(worker)  # returns when every worker is ready: all listen at once
        try:
            sock = listen(args.host, args.port)
        except OSError as err:
            print(f"serve: {err}", file=sys.stderr)
            return 2
        config = uvicorn_config(app, host=args.host, port=args.port, max_body=args.max_body)
        uvicorn.Server(config).run(sockets=[sock])
        return 0
    where = {"host": args.host, "port": args.port, "server": args.server}
    logger.info("listening", extra={"fields": where})
    if args.server == "uvicorn":
        import uvicorn

        config = uvicorn_config(app, host=args.host, port=args.port, max_body=args.max_body)
        uvicorn.Server(config).run()
    else:
        run_granian(app, host=args.host, port=args.port, max_body=args.max_body)
    return 0


def supervise(args, logger: logging.Logger) -> int:
    """`--workers N`: check the options, listen, hold the store, run the workers."""
    from statefulrnn.streams import workers

    try:
        check_workers(args)
        store = None
        if args.state:  # held open (shared lock) so no lone writer takes the file meanwhile
            from statefulrnn.streams.durable import SQLiteStore

            store = SQLiteStore(args.state, synchronous=args.sync, shared=True)
        holder = workers.listen(args.host, args.port, backlog=None)
    except (OSError, ValueError) as err:
        print(f"serve: {err}", file=sys.stderr)
        return 2
    host, port = holder.getsockname()[:2]
    logger.info(
        "listening",
        extra={
            "fields": {"host": host, "port": port, "server": args.server, "workers": args.workers}
        },
    )
    options = {k: v for k, v in vars(args).items() if not callable(v)}
    options["port"] = port  # port 0: the one the supervisor got
    try:
        return workers.supervise(holder, args.workers, options)
    finally:
        if store is not None:
            store.close()


def worker_main() -> int:
    """A worker of `serve --workers N` (started by streams/workers.py with its options)."""
    import argparse

    from statefulrnn.streams.workers import worker_setup

    info = worker_setup()
    if info is None:
        print(
            "statefulrnn.cli.serve is started by `statefulrnn serve --workers N`", file=sys.stderr
        )
        return 2
    return run(argparse.Namespace(**info["args"]), worker=info)


if __name__ == "__main__":
    sys.exit(worker_main())
