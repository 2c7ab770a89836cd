"""MicroBatcher: concurrent step requests within a short delay go through one StreamService.step.

The asyncio side of serving. Each HTTP or WebSocket request `await`s `submit(requests)`; one
loop task collects what arrives within `delay` seconds of the first waiting request (or until
`max_batch` steps), runs `service.step` on all of it in one worker thread (so the event loop
keeps accepting requests meanwhile), and hands each caller its own results:

    t=0    req A (s1)  ┐
    t=0.4  req B (s2)  ├─ one micro-batch: one StreamPool step per round, one store commit
    t=1.1  req C (s1)  ┘  (C is s1's second request: round 2, after A)
    t=2    delay over -> service.step([A, B, C]) in the worker; requests arriving now wait
                          for the next batch

Requests keep their arrival order inside a batch, and batches run one at a time, so a stream's
steps apply in the order they arrived. A request's error (bad x, seq, conflict) is its own
result; only a store failure fails the batch's steps (503), and then none of them is applied.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from statefulrnn.streams.service import StepRequest, StepResult, StreamService


class MicroBatcher:
    """Collects `submit`ted requests into micro-batches for `service.step` (see module doc).

    `on_batch(n_requests, n_steps, seconds, results)`: called after each batch (metrics).
    """

    def __init__(
        self,
        service: StreamService,
        *,
        delay: float = 0.002,
        max_batch: int = 4096,
        on_batch: Callable[[int, int, float, list[StepResult]], None] | None = None,
    ):
        if delay < 0:
            raise ValueError(f"the batching delay must be >= 0 seconds; received {delay}.")
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1; received {max_batch}.")
        self.service, self.delay, self.max_batch = service, delay, max_batch
        self.on_batch = on_batch
        self._queue: deque[tuple[list[StepRequest], asyncio.Future]] = deque()
        self._waiting = 0  # steps in the queue
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._worker = ThreadPoolExecutor(1, thread_name_prefix="statefulrnn-step")

    async def start(self) -> None:
        self._wake = asyncio.Event()
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for _, fut in self._queue:
            if not fut.done():
                fut.set_exception(RuntimeError("the server is shutting down"))
        self._queue.clear()
        self._worker.shutdown(wait=True)

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def enqueue(self, requests: list[StepRequest]) -> asyncio.Future:
        """Queue these requests (in order) for the next micro-batch, now; a future of their
        results (a WebSocket queues its messages in order without a task per message)."""
        if not self.running or self._wake is None:
            raise RuntimeError("the micro-batcher is not running")
        fut = asyncio.get_running_loop().create_future()
        self._queue.append((requests, fut))
        self._waiting += len(requests)
        self._wake.set()
        return fut

    async def submit(self, requests: list[StepRequest]) -> list[StepResult]:
        """Queue these requests (in order) for the next micro-batch; their results."""
        return await self.enqueue(requests)

    async def run_sync(self, fn, *args):
        """Run `fn(*args)` in the step worker, between micro-batches (reset, drop, evict)."""
        return await asyncio.get_running_loop().run_in_executor(self._worker, fn, *args)

    async def _collect(self) -> None:
        """Wait up to `delay` for more requests, in steps of delay/4: go at once when a step
        brings nothing new (a lone client pays ~delay/4, not the whole delay) or the batch is
        full. Sleeps, rather than a wake-up per arriving request: at 10,000 requests/s those
        wake-ups (an `asyncio.wait_for` each) cost more than the batching saved."""
        first, seen = time.monotonic(), self._waiting
        while self._waiting < self.max_batch:
            left = self.delay - (time.monotonic() - first)
            if left <= 0:
                return
            await asyncio.sleep(min(left, self.delay / 4))
            if self._waiting == seen:
                return
            seen = self._waiting

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        wake = self._wake
        if wake is None:
            raise RuntimeError("start() the micro-batcher before its loop runs")
        while True:
            if not self._queue:
                wake.clear()
                await wake.wait()
            await self._collect()
            batch: list[tuple[list[StepRequest], asyncio.Future]] = []
            taken = 0
            while self._queue and (not batch or taken + len(self._queue[0][0]) <= self.max_batch):
                item = self._queue.popleft()
                batch.append(item)
                taken += len(item[0])
            self._waiting -= taken
            requests = [r for reqs, _ in batch for r in reqs]
            t0 = time.perf_counter()
            try:
                results = await loop.run_in_executor(self._worker, self.service.step, requests)
            except Exception as err:  # a bug, not a bad request: fail this batch's callers
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(err)
                continue
            if self.on_batch is not None:
                self.on_batch(len(batch), len(requests), time.perf_counter() - t0, results)
            at = 0
            for reqs, fut in batch:
                if not fut.done():  # the caller may have gone (a closed connection)
                    fut.set_result(results[at : at + len(reqs)])
                at += len(reqs)
