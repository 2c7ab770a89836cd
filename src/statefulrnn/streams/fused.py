"""StatefulRNN's step computed in place on a work buffer: the pool's fast path.

Knows the inside of StatefulRNN (LSTM, GRU and tanh-RNN layers, a linear head) and the row
layout of streams/layout.py; nothing about ids or files. Which cells it covers is the
registry's `fast_stream` (model/cells/); for any other cell `fused_kernel` says None and
the pool runs `model.forward`. Gives the numbers of
`model.forward` (float32 within 1e-5; the tests check every cell, depth and batch size).

The work buffer puts the step's input in front of the state, so every layer's product reads
one contiguous column range, and one GEMM per layer and step does all the gates:

    # LSTM, 2 layers, F inputs, H hidden: one row of the work buffer
    #   | x (F) | h0 (H) | h1 (H) | c0 (H) | c1 (H) |
    #   [ layer 0 ------]                           layer 0 reads [x, h0], writes h0, c0
    #           [ layer 1 ------]                   layer 1 reads [h0 (new), h1], writes h1, c1
    #
    #   gates [B, 4H] = [x, h] @ [W_ih, W_hh]^T + (b_ih + b_hh), gate order [i, f, o, g]

Three ways to run it, by batch size; each has its own pre-scaled copy of the weights:
- few rows on the CPU: numpy (a numpy call costs ~0.5 µs, a torch call ~1.5 µs), with
  sigmoid(a) = (1 + tanh(a/2)) / 2, so one tanh pass does every gate;
- a middling batch: torch, exact sigmoid and tanh;
- B * H >= SIGMOID_TANH_MIN: torch, tanh(a) = 2 sigmoid(2a) - 1, because tanh is ~10x slower
  than sigmoid on the CPUs we measured, and three cheap passes beat one slow one.

A large call on the CPU (at least 2 * BLOCK_ROWS rows) runs in blocks of BLOCK_ROWS rows, each
gathered, stepped and scattered on its own: a block's gates (BLOCK_ROWS x 4H numbers) stay in
the core's cache between the GEMM and the elementwise passes, where the whole batch's would go
to memory and back for every pass. With `workers` > 1 the blocks are shared out to that many
threads, each taking the next block when it is done with one, every torch call on one intra-op
thread (torch releases the GIL inside its calls, and rows of distinct streams never overlap):

    # 10,000 streams, BLOCK_ROWS 1024, workers 2: blocks 0..9, next free block to whoever asks
    #   thread 0: | b0 | b2 | b3 | b5 | ...       (a core shared with another process simply
    #   thread 1: | b1 |    b4    | b6 | ...        takes fewer blocks: no thread waits on it)

A thread preempted while it holds a block still holds up the call: under a busy process a call
waits ~4 ms (a scheduler slice) for such a block (statefulrnn/threads.py has the measurements).
"""

from __future__ import annotations

import threading

import numpy as np
import torch
from torch import Tensor, nn

from statefulrnn import threads as thread_policy
from statefulrnn.model.rnn import StatefulRNN
from statefulrnn.streams.layout import Layout

NUMPY_MAX_ROWS = 16  # CPU calls with at most this many streams run in numpy
SIGMOID_TANH_MIN = 2048  # B * H from which torch computes tanh through sigmoid
BLOCK_ROWS = 1024  # a large CPU call runs in blocks of this many rows (see the module doc)
WORKSPACES = 16  # work buffers kept, by batch size and thread (the latest used)
# the cells with a step here (registry: fast_stream=True) -> gate columns per hidden unit
GATES = {"lstm": 4, "gru": 4, "rnn": 1}  # (GRU: r, z, n_x, n_h)


def fused_kernel(model, layout: Layout) -> FusedKernel | None:
    """The fused kernel for this model, or None if the fused path does not cover it."""
    if type(model) is not StatefulRNN or type(model.head) is not nn.Linear:
        return None
    if not model.spec.fast_stream:
        return None
    for layer in model.layers:
        plain = (
            layer.num_layers == 1
            and layer.bias
            and not layer.bidirectional
            and getattr(layer, "proj_size", 0) == 0
            and getattr(layer, "nonlinearity", "tanh") == "tanh"
        )
        if not plain:
            return None
    return FusedKernel(model, layout)


def scatter(slab: Tensor, idx: Tensor, rows: Tensor) -> None:
    """slab[idx] = rows. On the CPU through numpy: torch's index_copy_ is ~7x slower there."""
    if slab.device.type == "cpu" and slab.dtype in (torch.float32, torch.float64):
        slab.numpy()[idx.numpy()] = rows.numpy()
    else:
        slab.index_copy_(0, idx, rows)


class _Workspace:
    """Preallocated buffers and their views for one batch size (a view costs ~1 µs to make).
    With `numpy`, every view is a numpy array over the same memory."""

    def __init__(self, k: FusedKernel, batch: int, numpy: bool):
        f, h, n = k.input_size, k.hidden, k.num_layers
        buf = torch.zeros(batch, f + k.layout.width, device=k.device, dtype=k.dtype)
        gates = torch.empty(batch, GATES[k.cell] * h, device=k.device, dtype=k.dtype)
        v = (lambda t: t.numpy()) if numpy else (lambda t: t)
        self.state_t = buf[:, f:]  # torch view: the gather/scatter target
        self.state, self.x = v(buf[:, f:]), v(buf[:, :f])
        lo = [0] + [f + i * h for i in range(n - 1)]
        self.inp = [v(buf[:, lo[i] : f + (i + 1) * h]) for i in range(n)]
        self.h = [v(buf[:, f + i * h : f + (i + 1) * h]) for i in range(n)]
        c0 = f + n * h
        self.c = [v(buf[:, c0 + i * h : c0 + (i + 1) * h]) for i in range(n)]
        self.gates = v(gates)
        self.parts = [v(gates[:, j * h : (j + 1) * h]) for j in range(GATES[k.cell])]
        self.tmp = v(torch.empty(batch, h, device=k.device, dtype=k.dtype))
        self.scaled = "half" if numpy else ("twice" if batch * h >= SIGMOID_TANH_MIN else "exact")
        # the gates that take a sigmoid: LSTM [i, f, o] (and g in "twice"), GRU [r, z]
        sig = {"lstm": 4 if self.scaled == "twice" else 3, "gru": 2, "rnn": 0}[k.cell]
        self.sig = v(gates[:, : sig * h])


class _InPlace:
    """A _Workspace's views for rows [lo, hi) of the slab itself, for a call whose streams sit
    in consecutive slab rows in the call's order (the same ids stepped again, as they were
    admitted): no gather, no scatter. h and c are slab columns; layer 0's input is x and h0
    apart (two GEMMs: x is not in the slab), deeper layers read [h_{i-1}, h_i] in one."""

    def __init__(self, k: FusedKernel, ws: _Workspace, slab: Tensor, lo: int, hi: int):
        h, n, rows = k.hidden, k.num_layers, slab[lo:hi]
        self.h = [rows[:, i * h : (i + 1) * h] for i in range(n)]
        self.c = (
            [rows[:, (n + i) * h : (n + i + 1) * h] for i in range(n)] if k.cell == "lstm" else []
        )
        self.inp: list[Tensor | None] = [None] + [
            rows[:, (i - 1) * h : (i + 1) * h] for i in range(1, n)
        ]
        self.gates, self.parts, self.tmp = ws.gates, ws.parts, ws.tmp
        self.sig, self.scaled = ws.sig, ws.scaled
        self.x: Tensor | None = None  # this step's input [B, F], set by _run_torch


class _Blocks:
    """The blocks of one large call, handed out one at a time to whichever thread asks.

    The caller takes blocks too and then waits only for blocks other threads are running: a
    worker thread that starts late (its core busy with another process) finds none left and
    ends, and nobody waits for it."""

    def __init__(self, count: int):
        self.count, self.next, self.running = count, 0, 0
        self.error: BaseException | None = None
        self.cond = threading.Condition()

    def take(self) -> int | None:
        with self.cond:
            if self.error is not None or self.next >= self.count:
                return None
            self.next += 1
            self.running += 1
            return self.next - 1

    def finish(self, error: BaseException | None = None) -> None:
        with self.cond:
            self.running -= 1
            if error is not None and self.error is None:
                self.error = error
            self.cond.notify_all()

    def wait(self) -> None:
        """Until no block is running; re-raises a worker thread's error."""
        with self.cond:
            self.cond.wait_for(lambda: self.running == 0)
            error = self.error
        if error is not None:
            raise error


_Views = _Workspace | _InPlace  # what a step's layers read and write


class FusedKernel:
    """StatefulRNN (LSTM, GRU, tanh-RNN; any depth) stepped in place: one GEMM per layer and
    step, no allocation per step. Eval semantics (no dropout), no gradients."""

    def __init__(self, model: StatefulRNN, layout: Layout):
        self.model, self.layout, self.cell = model, layout, model.cell
        self.input_size, self.hidden = model.input_size, model.hidden_size
        self.num_layers = model.num_layers
        self._params = list(model.parameters())
        self._key: list[tuple[int, int]] | None = None
        self._workspace_lock = threading.Lock()
        self._refresh()

    # ------------------------------------------------------------- weights
    def target(self) -> tuple[torch.device, torch.dtype]:
        """Rebuild the fused weights if the model changed; the device and dtype of the rows."""
        self._refresh()
        return self.device, self.dtype

    def _refresh(self) -> None:
        # In-place updates (optimizer steps, load_state_dict) bump _version; .to() moves the
        # data. The parameter list is cached (model.parameters() costs more than the check),
        # so a parameter replaced by a new object is not seen: make a new pool for that.
        key = [(p.data_ptr(), p._version) for p in self._params]
        if key == self._key:
            return
        head = self.model.head
        self.device, self.dtype = head.weight.device, head.weight.dtype
        self.numpy_ok = self.device.type == "cpu" and self.dtype in (torch.float32, torch.float64)
        with torch.no_grad():
            self.weights: dict[str, list[tuple[Tensor, Tensor]]] = {
                "exact": [],
                "twice": [],
                "half": [],
            }
            for layer in self.model.layers:
                w, b, sig_rows, tanh_rows = self._fuse(layer)
                for name, rows, factor in (
                    ("exact", None, 1),
                    ("twice", tanh_rows, 2),
                    ("half", sig_rows, 0.5),
                ):
                    ws, bs = w.clone(), b.clone()
                    if rows is not None:
                        ws[rows] *= factor
                        bs[rows] *= factor
                    self.weights[name].append((ws.t().contiguous(), bs.contiguous()))
            self.head_w = head.weight.detach().t().contiguous()
            self.head_b = head.bias.detach().clone() if head.bias is not None else None
        self.np_dtype = np.dtype(str(self.dtype).replace("torch.", "")) if self.numpy_ok else None
        if self.numpy_ok:
            self.np_weights = [(w.numpy(), b.numpy()) for w, b in self.weights["half"]]
            self.np_head = (
                self.head_w.numpy(),
                None if self.head_b is None else self.head_b.numpy(),
            )
        self._workspaces: dict[tuple[int, bool, int], _Workspace] = {}
        self._key = key

    def _fuse(self, layer: nn.Module):
        """W [G, in + H], b [G] of one layer (gates reordered for contiguous slices), and the
        rows that feed a sigmoid and a tanh."""
        p = dict(layer.named_parameters())
        w_ih, w_hh = p["weight_ih_l0"].detach(), p["weight_hh_l0"].detach()
        b_ih, b_hh = p["bias_ih_l0"].detach(), p["bias_hh_l0"].detach()
        h = self.hidden
        if self.cell == "lstm":
            # torch's order is [i, f, g, o]; ours [i, f, o, g] puts the sigmoid gates together
            order = torch.cat(
                [torch.arange(0, 2 * h), torch.arange(3 * h, 4 * h), torch.arange(2 * h, 3 * h)]
            ).to(w_ih.device)
            w = torch.cat([w_ih, w_hh], dim=1)[order]
            return w, (b_ih + b_hh)[order], slice(0, 3 * h), slice(3 * h, 4 * h)
        if self.cell == "gru":
            # r and z see x and h together; n = tanh(n_x + r * n_h) needs its halves apart
            w = torch.cat(
                [
                    torch.cat([w_ih[: 2 * h], w_hh[: 2 * h]], dim=1),
                    torch.cat([w_ih[2 * h :], torch.zeros_like(w_hh[2 * h :])], dim=1),
                    torch.cat([torch.zeros_like(w_ih[2 * h :]), w_hh[2 * h :]], dim=1),
                ]
            )
            b = torch.cat([b_ih[: 2 * h] + b_hh[: 2 * h], b_ih[2 * h :], b_hh[2 * h :]])
            return w, b, slice(0, 2 * h), slice(2 * h, 4 * h)
        return torch.cat([w_ih, w_hh], dim=1), b_ih + b_hh, None, slice(0, h)

    def _workspace(self, batch: int, numpy: bool, lane: int = 0) -> _Workspace:
        """The work buffers for `batch` rows of worker thread `lane` (each thread its own)."""
        key = (batch, numpy, lane)
        with self._workspace_lock:  # worker threads share the cache
            ws = self._workspaces.pop(key, None)
        if ws is None:
            ws = _Workspace(self, batch, numpy)
        with self._workspace_lock:
            while len(self._workspaces) >= WORKSPACES:
                self._workspaces.pop(next(iter(self._workspaces)))
            self._workspaces[key] = ws  # the most recent last
        return ws

    # ------------------------------------------------------------- steps
    def takes_numpy(self, batch: int, x: np.ndarray) -> bool:
        """Whether a call of `batch` streams with this numpy x (floats of any width: the
        caller casts them to `np_dtype`) runs on the numpy path."""
        return self.numpy_ok and batch <= NUMPY_MAX_ROWS and x.dtype.kind == "f"

    def splits(self, batch: int) -> bool:
        """Whether a call of `batch` streams runs in blocks (and may use worker threads)."""
        return (
            self.device.type == "cpu"
            and batch >= 2 * BLOCK_ROWS
            and not (self.numpy_ok and batch <= NUMPY_MAX_ROWS)
        )

    def step(self, slab: Tensor, idx: Tensor, x: Tensor, workers: int = 1) -> Tensor:
        """Advance the streams in rows `idx` of `slab` by x [B, k, F]; return y [B, k, O].
        Call `target()` first: it refreshes the weights. `workers`: threads for a call that
        `splits` (each runs its torch calls on one intra-op thread); ignored otherwise."""
        batch = x.shape[0]
        if self.numpy_ok and batch <= NUMPY_MAX_ROWS:
            return torch.from_numpy(self.step_numpy(slab.numpy(), idx.numpy(), x.numpy()))
        first = _first_of_run(idx)
        if self.splits(batch):
            return self._step_blocks(slab, idx, x, workers, first)
        ws = self._workspace(batch, numpy=False)
        if first is not None:
            return self._run_torch(_InPlace(self, ws, slab, first, first + batch), x)
        torch.index_select(slab, 0, idx, out=ws.state_t)  # gather
        y = self._run_torch(ws, x)
        scatter(slab, idx, ws.state_t)
        return y

    def step_numpy(self, slab: np.ndarray, slots: np.ndarray, x: np.ndarray) -> np.ndarray:
        """`step` for a few rows on the CPU, numpy in and out: slab [N, D], slots [B], x [B, k, F]
        (any float array; it is copied in) -> y [B, k, O]."""
        ws = self._workspace(x.shape[0], numpy=True)
        ws.state[...] = slab[slots]  # gather
        y = self._run_numpy(ws, x)
        slab[slots] = ws.state  # scatter
        return y

    def _step_blocks(
        self, slab: Tensor, idx: Tensor, x: Tensor, workers: int, first: int | None
    ) -> Tensor:
        batch, k = x.shape[0], x.shape[1]
        y = torch.empty(batch, k, self.head_w.shape[1], device=self.device, dtype=self.dtype)
        starts = range(0, batch, BLOCK_ROWS)
        share = _Blocks(len(starts))

        def work(lane: int) -> None:
            while (n := share.take()) is not None:
                try:
                    lo = starts[n]
                    hi = min(lo + BLOCK_ROWS, batch)
                    ws = self._workspace(hi - lo, numpy=False, lane=lane)
                    if first is not None:
                        at = _InPlace(self, ws, slab, first + lo, first + hi)
                        self._run_torch(at, x[lo:hi], out=y[lo:hi])
                    else:
                        rows = idx[lo:hi]
                        torch.index_select(slab, 0, rows, out=ws.state_t)  # gather
                        self._run_torch(ws, x[lo:hi], out=y[lo:hi])
                        scatter(slab, rows, ws.state_t)
                except BaseException as err:
                    share.finish(err)
                    raise
                share.finish()

        helpers = min(workers, len(starts)) - 1
        if helpers:
            pool = thread_policy.worker_pool(helpers)
            for lane in range(1, helpers + 1):
                pool.submit(work, lane)
        try:
            work(0)
        finally:
            share.wait()  # the blocks other threads took; never a thread that started late
        return y

    def _run_torch(self, ws: _Views, x: Tensor, out: Tensor | None = None) -> Tensor:
        """x [B, k, F] through every layer and the head, k steps; y [B, k, O] (into `out`)."""
        layer = {"lstm": self._lstm, "gru": self._gru, "rnn": self._rnn}[self.cell]
        weights, last = self.weights[ws.scaled], ws.h[-1]
        if x.shape[1] == 1:
            if isinstance(ws, _InPlace):
                ws.x = x[:, 0]
            else:
                ws.x.copy_(x.reshape(x.shape[0], -1))
            for i, (w, b) in enumerate(weights):
                layer(ws, i, w, b)
            if out is None:
                return self._head(last).unsqueeze(1)
            out[:, 0] = self._head(last)
            return out
        ys = torch.empty(
            x.shape[1], x.shape[0], self.head_w.shape[1], device=self.device, dtype=self.dtype
        )
        for xs, y in zip(x.unbind(1), ys.unbind(0)):
            if isinstance(ws, _InPlace):
                ws.x = xs
            else:
                ws.x.copy_(xs)
            for i, (w, b) in enumerate(weights):
                layer(ws, i, w, b)
            self._head(last, out=y)
        if out is None:
            return ys.transpose(0, 1).contiguous()
        out.copy_(ys.transpose(0, 1))
        return out

    def _gates(self, ws: _Views, i: int, w: Tensor, b: Tensor) -> None:
        """ws.gates = [input, h] @ w + b for layer i (in place on the slab, layer 0 in two
        GEMMs: x, then h0 added)."""
        inp = ws.inp[i]
        if inp is not None:
            torch.addmm(b, inp, w, out=ws.gates)
            return
        f, x = self.input_size, ws.x
        assert isinstance(x, Tensor)  # set for this step by _run_torch
        torch.addmm(b, x, w[:f], out=ws.gates)
        ws.gates.addmm_(ws.h[0], w[f:])

    def _head(self, h: Tensor, out: Tensor | None = None) -> Tensor:
        if self.head_b is None:
            return torch.mm(h, self.head_w, out=out)
        return torch.addmm(self.head_b, h, self.head_w, out=out)

    def _lstm(self, ws: _Views, i: int, w: Tensor, b: Tensor) -> None:
        h, c, (ig, fg, og, gg) = ws.h[i], ws.c[i], ws.parts
        self._gates(ws, i, w, b)
        ws.sig.sigmoid_()
        if ws.scaled == "twice":
            # gg holds sigmoid(2g), so i * tanh(g) = 2 * i * gg - i
            c.mul_(fg).addcmul_(ig, gg, value=2).sub_(ig)
            # h = o * tanh(c) = o - 2 * o * sigmoid(-2c)
            torch.mul(c, -2, out=ws.tmp).sigmoid_()
            torch.addcmul(og, og, ws.tmp, value=-2, out=h)
        else:
            gg.tanh_()
            c.mul_(fg).addcmul_(ig, gg)
            torch.tanh(c, out=h).mul_(og)

    def _gru(self, ws: _Views, i: int, w: Tensor, b: Tensor) -> None:
        h, (r, z, nx, nh) = ws.h[i], ws.parts
        self._gates(ws, i, w, b)
        ws.sig.sigmoid_()
        nx.addcmul_(r, nh)  # n's pre-activation (twice it, in the "twice" weights)
        if ws.scaled == "twice":
            nx.sigmoid_().mul_(2).sub_(1)
        else:
            nx.tanh_()
        h.sub_(nx).mul_(z).add_(nx)  # h' = n + z * (h - n) = (1 - z) * n + z * h

    def _rnn(self, ws: _Views, i: int, w: Tensor, b: Tensor) -> None:
        self._gates(ws, i, w, b)
        if ws.scaled == "twice":
            torch.mul(ws.gates.sigmoid_(), 2, out=ws.h[i]).sub_(1)
        else:
            torch.tanh(ws.gates, out=ws.h[i])

    # numpy, for a few rows: the same steps with sigmoid(a) = (1 + tanh(a/2)) / 2, whose
    # halved pre-activations are in the "half" weights (numpy's exp would warn on overflow)
    def _run_numpy(self, ws: _Workspace, x: np.ndarray) -> np.ndarray:
        layer = {"lstm": self._np_lstm, "gru": self._np_gru, "rnn": self._np_rnn}[self.cell]
        head_w, head_b = self.np_head
        if x.shape[1] == 1:  # the latency case: no output buffer to lay out
            ws.x[...] = x[:, 0]
            for i, (w, b) in enumerate(self.np_weights):
                layer(ws, i, w, b)
            y = ws.h[-1] @ head_w
            if head_b is not None:
                y += head_b
            return y[:, None]
        ys = np.empty((x.shape[1], x.shape[0], head_w.shape[1]), dtype=ws.state.dtype)
        for s in range(x.shape[1]):
            ws.x[...] = x[:, s]
            for i, (w, b) in enumerate(self.np_weights):
                layer(ws, i, w, b)
            np.matmul(ws.h[-1], head_w, out=ys[s])
            if head_b is not None:
                np.add(ys[s], head_b, out=ys[s])
        return np.ascontiguousarray(ys.transpose(1, 0, 2))

    @staticmethod
    def _np_gates(
        ws: _Workspace, i: int, w: np.ndarray, b: np.ndarray, every: bool = False
    ) -> None:
        """Gate pre-activations, then sigmoid(a) as (1 + tanh(a/2)) / 2 on the sigmoid gates;
        `every`: the tanh runs over every gate in one pass (LSTM: g's tanh is its own)."""
        g, s = ws.gates, ws.sig
        np.matmul(ws.inp[i], w, out=g)
        np.add(g, b, out=g)
        np.tanh(g if every else s, out=g if every else s)  # tanh(a/2) of the sigmoid gates ...
        np.multiply(s, 0.5, out=s)
        np.add(s, 0.5, out=s)  # ... made sigmoid(a)

    def _np_lstm(self, ws: _Workspace, i: int, w: np.ndarray, b: np.ndarray) -> None:
        h, c, (ig, fg, og, gg) = ws.h[i], ws.c[i], ws.parts
        self._np_gates(ws, i, w, b, every=True)  # gg = tanh(g) too
        np.multiply(c, fg, out=c)
        np.multiply(ig, gg, out=ws.tmp)
        np.add(c, ws.tmp, out=c)
        np.tanh(c, out=h)
        np.multiply(h, og, out=h)

    def _np_gru(self, ws: _Workspace, i: int, w: np.ndarray, b: np.ndarray) -> None:
        h, (r, z, nx, nh) = ws.h[i], ws.parts
        self._np_gates(ws, i, w, b)
        np.multiply(r, nh, out=nh)
        np.add(nx, nh, out=nx)
        np.tanh(nx, out=nx)
        np.subtract(h, nx, out=h)
        np.multiply(h, z, out=h)
        np.add(h, nx, out=h)

    def _np_rnn(self, ws: _Workspace, i: int, w: np.ndarray, b: np.ndarray) -> None:
        np.matmul(ws.inp[i], w, out=ws.gates)
        np.add(ws.gates, b, out=ws.gates)
        np.tanh(ws.gates, out=ws.h[i])


def _first_of_run(idx: Tensor) -> int | None:
    """The first slab row if `idx` (CPU) is consecutive rows in order (first, first + 1, ...)."""
    if idx.device.type != "cpu" or len(idx) == 0:
        return None
    rows = idx.numpy()
    first = int(rows[0])
    if int(rows[-1]) - first != len(rows) - 1:
        return None
    return first if len(rows) < 2 or bool((np.diff(rows) == 1).all()) else None
