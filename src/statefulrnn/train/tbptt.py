"""TBPTT(k1, k2): every k1 = window steps, one update whose gradient reaches k2 >= k1 steps back.

Williams & Peng's truncation: per lane keep the state from k2 steps back (detached) and rerun
those k2 steps with gradient, scoring only the last k1. The schedule's lanes are viewed as
timelines, so "k2 steps back" is a slice; resets inside the k2 history zero the state there,
so a new sequence never back-propagates into the previous one.

    # window (k1) 2, backprop (k2) 5; chunk 3 covers steps 6..7 of lane 0; * = reset at step 4
    # steps:     2  3 |*4  5 | 6  7
    # run:       g  g |  g  g | g  g     g = with gradient, from the stored state at step 3... 2
    # scored:                 | s  s
    # the reset at 4 zeroes the state there: steps 2-3 do not reach the loss
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from statefulrnn.data.schedule import Schedule
from statefulrnn.model.base import RecurrentModel
from statefulrnn.model.state import State
from statefulrnn.train.chunks import Pass


def timelines(t: torch.Tensor, chunks: int, lanes: int) -> torch.Tensor:
    """[C·B, W, ...] rows (chunk-major) -> [B, C·W, ...] one timeline per lane (one copy)."""
    w = t.shape[1]
    return (
        t.reshape(chunks, lanes, w, *t.shape[2:])
        .transpose(0, 1)
        .reshape(lanes, chunks * w, *t.shape[2:])
    )


class TBPTTChunks:
    """Chunks whose y_hat (over the chunk's k1 steps) carries a graph k2 steps back.

    `scored[k] = False` says chunk k makes no update (no step scored on any rank): its y_hat is
    None, and only the k1 steps that move the stored state on are run, without gradient.
    """

    def __init__(
        self, model: RecurrentModel, schedule: Schedule, k2: int, scored: list[bool] | None = None
    ):
        self.model, self.schedule, self.k2, self.scored = model, schedule, k2, scored
        # where the next chunk's k2 history starts, and the detached state before that step
        # (resets at `pos` not applied yet)
        self.pos = 0
        self.state: State | None = None

    def __iter__(self) -> Iterator[Pass]:
        schedule, k1, k2 = self.schedule, self.schedule.window, self.k2
        lanes, n = schedule.batch_size, len(schedule)
        x = timelines(schedule.x, n, lanes)
        reset = schedule.reset.view(n, lanes)  # reset[j, b]: lane b starts a sequence at step j·k1
        any_reset = reset.any(
            dim=1
        ).tolist()  # once: the k2 history is split only where a lane resets

        for k in range(n):
            end = (k + 1) * k1
            start = self.pos
            next_pos = max(0, end + k1 - k2)  # where the next chunk's history will start
            update = self.scored is None or self.scored[k]
            stop = end if update else next_pos
            cuts = {start, stop, next_pos} | {
                j * k1 for j in range(start // k1 + 1, end // k1) if any_reset[j]
            }
            points = sorted(p for p in cuts if start <= p <= stop)
            state, outs, next_state = self.state, [], None
            with torch.set_grad_enabled(update and torch.is_grad_enabled()):
                for a, b in zip(points[:-1], points[1:]):
                    if a % k1 == 0 and any_reset[a // k1] and state is not None:
                        # a new sequence starts here: cut the history
                        state = state.reset(reset[a // k1])
                    if a == next_pos:
                        next_state = state
                    y_hat, state = self.model(x[:, a:b], state)
                    outs.append(y_hat)
            if next_pos == stop:
                next_state = state
            y_hat = None
            if update:
                y_hat = torch.cat(outs, dim=1)[:, -k1:] if len(outs) > 1 else outs[0][:, -k1:]
            self.pos = next_pos
            self.state = None if next_state is None else next_state.detach()
            c = schedule.chunk(k)
            yield Pass(y_hat, c.y, c.w)
