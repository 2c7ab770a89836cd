"""A model's outputs over whole sequences: one stateful pass, or a fresh pass per window.

What prediction, training's validation and `ModelBundle` share, below all three
(`outputs_in_model_units` picks the mode; `predict` adds bundles and unpacking; `train.fit`
scores its validation sequences with these). Stateful: every sequence
runs once from a zero state, chunk after chunk, state carried; many sequences run side by side
in lanes. Windowed: the output at step t comes from a fresh pass over the `window` steps ending
at t (fewer at the start), from a zero state, or from the state reached by `burn_in` steps
before the window. Both are batched; neither keeps gradients.

    # windowed, window 3, one sequence of 5 steps: rows of one batch, ^ = output kept
    # row 0:  x0 x1 x2      outputs at t = 0, 1, 2  (the first window also serves t < window)
    #         ^  ^  ^
    # row 1:  x1 x2 x3      output at t = 3
    #               ^
    # row 2:  x2 x3 x4      output at t = 4
    #               ^
"""

from __future__ import annotations

import numpy as np
import torch

from statefulrnn import losses
from statefulrnn.data.schedule import pack, stateful_schedule
from statefulrnn.data.sequences import Sequences
from statefulrnn.model.base import RecurrentModel
from statefulrnn.modes import PREDICT_MODES

STATEFUL_CHUNK = (
    512  # steps per chunk of a stateful pass; state carries across, so any size is exact
)
WINDOWED_ROWS = 4096  # window rows per batch of a windowed pass




def _check_model_input(model: RecurrentModel, seqs: Sequences, what: str = "sequences") -> None:
    if not isinstance(seqs, Sequences):
        raise TypeError(f"{what} must be a statefulrnn.Sequences; received {type(seqs).__name__}.")
    if seqs.num_features != model.input_size:
        raise ValueError(
            f"{what} have {seqs.num_features} features per step but the model expects "
            f"{model.input_size} (its input_size)."
        )


def outputs_in_model_units(model, seqs, mode, window, burn_in, batch_size) -> np.ndarray:
    """Packed network outputs [S, O] of `seqs` as given (no scaling, no link)."""
    _check_model_input(model, seqs)
    if mode == "stateful":
        if burn_in is not None:
            raise ValueError(
                "burn_in applies to windowed prediction; stateful prediction already carries all history."
            )
        return stateful_outputs(model, seqs, batch_size=batch_size)
    if mode == "windowed":
        if window is None:
            raise ValueError(
                "windowed prediction needs a window (steps per fresh pass), e.g. window=50."
            )
        return windowed_outputs(model, seqs, window=window, burn_in=burn_in)
    raise ValueError(f"unknown prediction mode {mode!r}; choose one of {PREDICT_MODES}.")


class _EvalMode:
    """Run the model in eval mode without gradients, and restore its mode afterwards."""

    def __init__(self, model: RecurrentModel):
        self.model, self.was_training = model, model.training

    def __enter__(self):
        self.model.eval()
        self.no_grad = torch.no_grad()
        self.no_grad.__enter__()

    def __exit__(self, *exc):
        self.no_grad.__exit__(*exc)
        self.model.train(self.was_training)


def stateful_outputs(
    model: RecurrentModel, seqs: Sequences, *, batch_size: int = 256
) -> np.ndarray:
    """Packed outputs [S, O] of one stateful pass over every sequence."""
    packed = pack(seqs)
    chunk = int(min(STATEFUL_CHUNK, seqs.lengths.max()))
    lanes = int(min(batch_size, len(seqs)))
    schedule = stateful_schedule(
        seqs, window=chunk, batch_size=lanes, shuffle=False, dtype=model.dtype
    )
    out = np.zeros((packed.offsets[-1], model.output_size))
    device = model.device
    state = None
    with _EvalMode(model):
        for k in range(len(schedule)):
            c = schedule.chunk(k)
            if state is not None and c.any_reset:
                state = state.reset(c.reset.to(device))  # new sequences start in these lanes
            y_hat, state = model(c.x.to(device), state)
            src = schedule.source[schedule.bounds[k] : schedule.bounds[k + 1]]
            real = src >= 0
            out[src[real]] = y_hat.cpu().double().numpy()[real]
    return out


def _window_rows(lengths: np.ndarray, offsets: np.ndarray, window: int):
    """Every window row of every sequence: packed start, steps, and which outputs to keep.

    Row r covers packed steps start[r] .. start[r] + n[r] - 1; `time[r]` is its first step's
    time within its sequence (for burn-in); `keep_from[r]` is the first position whose output
    is kept (0 for a sequence's first row, the last position otherwise).
    """
    starts, ns, times, keep_from = [], [], [], []
    for off, t_len in zip(offsets[:-1].tolist(), lengths.tolist()):
        first = min(window, t_len)
        s = np.arange(0, t_len - first + 1)  # row i covers times s[i] .. s[i] + first - 1
        starts.append(off + s)
        times.append(s)
        ns.append(np.full(len(s), first))
        k = np.full(len(s), first - 1)
        k[0] = 0
        keep_from.append(k)
    return (
        np.concatenate(starts),
        np.concatenate(ns),
        np.concatenate(times),
        np.concatenate(keep_from),
    )


def windowed_outputs(
    model: RecurrentModel,
    seqs: Sequences,
    *,
    window: int,
    burn_in: int | str | None = None,
    batch_size: int = WINDOWED_ROWS,
) -> np.ndarray:
    """Packed outputs [S, O]: at each step, a fresh pass over the window ending there.

    `burn_in=b` starts each window from the state reached by the b steps before it (fewer at
    the sequence's start) instead of zero; `burn_in="all"` runs the whole history before it,
    which makes the result equal to stateful prediction at O(T²) cost.
    """
    if not isinstance(window, (int, np.integer)) or window < 1:
        raise ValueError(f"windowed prediction needs window >= 1; received {window!r}.")
    b = _burn_in_steps(burn_in, seqs)
    packed = pack(seqs)
    lengths = seqs.lengths
    start, n, time, keep_from = _window_rows(lengths, packed.offsets, window)
    device, dtype = model.device, model.dtype
    # one zero row at the end serves every padded position
    x_all = torch.from_numpy(np.concatenate([packed.x, np.zeros((1, packed.x.shape[1]))])).to(dtype)
    pad = packed.x.shape[0]
    out = np.zeros((pad, model.output_size))
    width = int(n.max())
    rows_per_batch = max(1, batch_size if b == 0 else max(1, batch_size * width // (width + b)))
    with _EvalMode(model):
        for r0 in range(0, len(start), rows_per_batch):
            sl = slice(r0, r0 + rows_per_batch)
            s, nn_, t0 = start[sl], n[sl], time[sl]
            pos = np.arange(width)[None, :]
            idx = np.where(pos < nn_[:, None], s[:, None] + pos, pad)
            xb = x_all[torch.from_numpy(idx)].to(device)
            state = None
            if b > 0:
                nb = np.minimum(t0, b)  # burn-in steps available before each window
                bw = int(nb.max())
                if bw > 0:
                    bpos = np.arange(bw)[None, :]
                    bidx = np.where(bpos < nb[:, None], s[:, None] - nb[:, None] + bpos, pad)
                    state = model.final_state(
                        x_all[torch.from_numpy(bidx)].to(device), torch.from_numpy(nb).to(device)
                    )
            y_hat, _ = model(xb, state)
            y_hat = y_hat.cpu().double().numpy()
            keep = (pos >= keep_from[sl][:, None]) & (pos < nn_[:, None])
            out[idx[keep]] = y_hat[keep]
    return out


def _burn_in_steps(burn_in, seqs: Sequences) -> int:
    if burn_in is None:
        return 0
    if burn_in == "all":
        return int(seqs.lengths.max())
    if not isinstance(burn_in, (int, np.integer)) or burn_in < 0:
        raise ValueError(f"burn_in must be an integer >= 0 or 'all'; received {burn_in!r}.")
    return int(burn_in)


def score(
    packed_out: np.ndarray, seqs: Sequences, loss: str, metrics: list[str]
) -> dict[str, float]:
    """Weighted mean loss (and metrics) over every scored step, from packed outputs."""
    packed = pack(seqs)
    y_hat = torch.from_numpy(packed_out)
    y = torch.from_numpy(packed.y)
    w = torch.from_numpy(packed.w)
    total, weight = losses.get_loss(loss)(y_hat, y, w)
    result = {"loss": float(total / weight)}
    for name in metrics:
        s, ws = losses.METRICS[name](y_hat, y, w, loss)
        result[name] = float(s / ws)
    return result
