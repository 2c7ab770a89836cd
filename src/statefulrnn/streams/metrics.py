"""Prometheus metrics of a served StreamService (prometheus_client, one registry per app).

statefulrnn_requests_total{status}       step requests answered, by HTTP-like status
statefulrnn_steps_total                  stream steps applied (k per request)
statefulrnn_batch_requests               histogram: step requests per micro-batch
statefulrnn_batch_seconds                histogram: time of one micro-batch (step + commit)
statefulrnn_request_seconds              histogram: a step request's wait + batch time
statefulrnn_streams_held                 gauge: stream states in memory
statefulrnn_streams_known                gauge: streams in the store (a count the store keeps
                                         as it commits: a scrape never scans the store)
statefulrnn_store_errors_total           state-store failures (each failed a micro-batch)

Under `serve --workers N` (PROMETHEUS_MULTIPROC_DIR set by the supervisor, streams/workers.py)
each worker writes its values to files there and any worker's /metrics answers for all of
them (prometheus_client's multiprocess mode): counters and histograms are summed over every
worker that ran, streams held over the live ones, streams known is the latest count. Without
it, a scrape would see the counters of whichever worker took the connection.
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"  # prometheus_client's own name

LATENCY = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)
SIZES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)


class Metrics:
    def __init__(self, service):
        self.registry = r = CollectorRegistry()
        self.requests = Counter(
            "statefulrnn_requests", "Step requests answered, by status", ["status"], registry=r
        )
        self.applied = Counter("statefulrnn_steps", "Stream steps applied", registry=r)
        self.batch_requests = Histogram(
            "statefulrnn_batch_requests", "Step requests per micro-batch", buckets=SIZES, registry=r
        )
        self.batch_seconds = Histogram(
            "statefulrnn_batch_seconds", "Seconds per micro-batch", buckets=LATENCY, registry=r
        )
        self.latency = Histogram(
            "statefulrnn_request_seconds",
            "Seconds from queueing to answer",
            buckets=LATENCY,
            registry=r,
        )
        self.store_errors = Counter("statefulrnn_store_errors", "State store failures", registry=r)
        shared = bool(os.environ.get(MULTIPROCESS_ENV))
        self._held = Gauge(
            "statefulrnn_streams_held",
            "Stream states in memory",
            registry=r,
            multiprocess_mode="livesum",
        )
        if not shared:
            self._held.set_function(lambda: service.held)
        self._known = Gauge(
            "statefulrnn_streams_known",
            "Streams in the store",
            registry=r,
            multiprocess_mode="mostrecent",
        )
        self._scraped = r
        if shared:  # a scrape reads every worker's files, not this registry
            from prometheus_client import multiprocess

            self._scraped = CollectorRegistry()
            multiprocess.MultiProcessCollector(self._scraped)
        self._shared = shared
        self._service = service
        self._ok = self.requests.labels("200")
        self._by_status: dict = {}

    def batch(self, n_calls: int, n_requests: int, seconds: float, results=()) -> None:
        """One micro-batch: its size and time, and its results counted (once per batch, not
        per request: prometheus_client's locked increments were ~2% of the server's py-spy
        samples under 1,000 one-step HTTP clients)."""
        self.batch_requests.observe(n_requests)
        self.batch_seconds.observe(seconds)
        ok = steps = 0
        for res in results:
            if res.error is None:
                ok += 1
                if not res.replayed:
                    steps += len(res.y)
            else:
                self.refused(res.status)
        if ok:
            self._ok.inc(ok)
        if steps:
            self.applied.inc(steps)
        if self._shared:  # other workers read it from the file: kept current per batch
            self._held.set(self._service.held)

    def waited(self, seconds: float) -> None:
        """One request's time from queueing to answer."""
        self.latency.observe(seconds)

    def refused(self, status: int) -> None:
        child = self._by_status.get(status)
        if child is None:
            child = self._by_status[status] = self.requests.labels(str(status))
        child.inc()

    def store_error(self) -> None:
        self.store_errors.inc()

    def render(self) -> tuple[bytes, str]:
        try:
            self._known.set(len(self._service))
        except Exception:  # the store is down: the error counter says so
            self._known.set(float("nan"))
        return generate_latest(self._scraped), CONTENT_TYPE_LATEST
