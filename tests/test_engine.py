"""The recurrent engines (model/engine.py): the CPU loop equals the fused module and the numpy
reference (float64, 1e-10, gradients included), and the chooser picks what it says."""

from __future__ import annotations

import os
import signal
import time

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import statefulrnn as sr
from statefulrnn import reference, threads
from statefulrnn.model import engine

TOL = 1e-10


def model_of(layers, f, hidden, o, seed, scale=0.7, cell="lstm"):
    torch.manual_seed(seed)
    m = sr.StatefulRNN(f, hidden, o, cell=cell, num_layers=layers, dtype=torch.float64)
    with torch.no_grad():
        for p in m.parameters():
            p.uniform_(-scale, scale)
    return m


def run(model, x, state, reset, which, monkeypatch):
    """y, final state and every gradient (parameters, x, initial state) by engine `which`."""
    monkeypatch.setenv("STATEFULRNN_ENGINE", which)
    model.zero_grad(set_to_none=True)
    x = x.clone().requires_grad_(True)
    st0 = None
    if state is not None:
        st0 = sr.State(tuple(t.clone().requires_grad_(True) for t in state.tensors), state.names)
    y, final = model(x, st0, reset)
    loss = (y.sin() * 1.3).sum() + sum((t**2).sum() * 0.7 for t in final.tensors)
    loss.backward()
    grads = [p.grad.clone() for p in model.parameters()] + [x.grad.clone()]
    if st0 is not None:
        grads += [t.grad.clone() for t in st0.tensors]
    return y.detach(), final.detach(), grads


def assert_same_run(got, want) -> None:
    """Two `run` results (y, final state, gradients) agree to TOL (gradients relative to
    their size)."""
    (y_a, fin_a, g_a), (y_b, fin_b, g_b) = got, want
    assert (y_a - y_b).abs().max() <= TOL
    for a, b in zip(fin_a.tensors, fin_b.tensors):
        assert (a - b).abs().max() <= TOL
    assert len(g_a) == len(g_b)
    for a, b in zip(g_a, g_b):
        assert (a - b).abs().max() <= TOL * max(1.0, b.abs().max().item())


@given(
    st.integers(1, 3),  # layers
    st.integers(1, 3),  # inputs
    st.integers(1, 6),  # hidden
    st.integers(1, 2),  # outputs
    st.integers(1, 4),  # lanes
    st.integers(1, 12),  # steps
    st.booleans(),  # a carried (non-zero) state
    st.booleans(),  # reset some lanes
    st.integers(1, 5),  # lane groups (threads) of the loop; more than the lanes: one per lane
    st.integers(0, 2**16),
)
def test_loop_equals_fused_and_reference_with_gradients(
    layers, f, hidden, o, batch, steps, warm, resets, groups, seed
):
    """Every layer's lanes cut into `groups` threads (uneven groups included): the same."""
    mp = pytest.MonkeyPatch()
    mp.setattr(engine, "MIN_GROUP_WIDTH", 1)  # split even these tiny chunks
    try:
        model = model_of(layers, f, hidden, o, seed)
        rng = np.random.default_rng(seed)
        x = torch.from_numpy(rng.normal(size=(batch, steps, f)))
        state = reset = None
        h0 = c0 = None
        if warm:
            h0 = rng.normal(size=(layers, batch, hidden))
            c0 = rng.normal(size=(layers, batch, hidden))
            state = sr.State((torch.from_numpy(h0), torch.from_numpy(c0)), ("h", "c"))
            if resets:
                mask = rng.random(batch) < 0.5
                reset = torch.from_numpy(mask)
                h0, c0 = h0.copy(), c0.copy()
                h0[:, mask] = 0.0
                c0[:, mask] = 0.0
        with threads.using_workers(groups):
            assert engine.lane_groups(batch, hidden) == min(groups, batch)
            y_l, fin_l, g_l = run(model, x, state, reset, "loop", mp)
        assert_same_run((y_l, fin_l, g_l), run(model, x, state, reset, "fused", mp))
        trace = reference.forward(reference.weights_of(model), "lstm", x.numpy(), h0=h0, c0=c0)
        assert np.abs(y_l.numpy() - trace.y).max() <= TOL
        assert np.abs(fin_l.h.numpy() - trace.final_h).max() <= TOL
        assert np.abs(fin_l.c.numpy() - trace.final_c).max() <= TOL
    finally:
        mp.undo()


@pytest.mark.parametrize("backprop", [None, 7])
@pytest.mark.parametrize("fit_threads", [1, 3])
def test_fit_on_the_loop_equals_fit_on_the_fused_module(backprop, fit_threads, monkeypatch):
    """Stateful training over chunks, resets and a k2 > k1 history: the same run either way,
    the loop's lanes in one thread or cut into groups of threads (`fit(threads=3)`)."""
    monkeypatch.setattr(engine, "MIN_GROUP_WIDTH", 1)
    seen = []
    real = engine._split

    def spy(batch, k):
        seen.append(k)
        return real(batch, k)

    monkeypatch.setattr(engine, "_split", spy)
    rng = np.random.default_rng(3)
    lengths = [11, 17, 9, 14, 6]
    xs = [rng.normal(size=(n, 2)) for n in lengths]
    ys = [rng.normal(size=(n, 1)) for n in lengths]
    data = sr.Sequences.from_arrays(xs, ys)
    runs = {}
    for which in ("loop", "fused"):
        monkeypatch.setenv("STATEFULRNN_ENGINE", which)
        model = model_of(2, 2, 5, 1, seed=1, scale=0.3)
        h = sr.fit(model, data, window=3, batch_size=3, epochs=2, backprop=backprop, verbose=0,
                   optimizer="sgd", lr=0.05, threads=fit_threads)  # fmt: skip
        runs[which] = (h.column("loss"), model.state_dict())
    assert seen and set(seen) == {fit_threads}  # threads=1: one group, never a split
    np.testing.assert_allclose(runs["loop"][0], runs["fused"][0], rtol=0, atol=TOL)
    for k, v in runs["fused"][1].items():
        assert (runs["loop"][1][k] - v).abs().max() <= TOL, k


@given(
    st.sampled_from(["lstm", "gru", "rnn"]),
    st.integers(1, 3),  # layers
    st.integers(1, 3),  # inputs
    st.integers(1, 6),  # hidden
    st.integers(1, 4),  # lanes
    st.booleans(),  # a carried (non-zero) state
    st.booleans(),  # reset some lanes
    st.integers(0, 2**16),
)
def test_step_engine_equals_fused_and_reference_with_gradients(
    cell, layers, f, hidden, batch, warm, resets, seed
):
    """A one-step chunk by the cell's function: the fused module's numbers (float64, gradients
    of weights, x and the carried state included) and the numpy reference's."""
    mp = pytest.MonkeyPatch()
    try:
        model = model_of(layers, f, hidden, 2, seed, cell=cell)
        assert all(
            engine.choose(layer, torch.zeros(batch, 1, f)) == "step" for layer in model.layers
        )
        rng = np.random.default_rng(seed)
        x = torch.from_numpy(rng.normal(size=(batch, 1, f)))
        state = reset = None
        parts = None
        if warm:
            parts = [rng.normal(size=(layers, batch, hidden)) for _ in model.state_spec()[1]]
            state = sr.State(tuple(torch.from_numpy(p) for p in parts), model.state_spec()[1])
            if resets:
                reset = torch.from_numpy(rng.random(batch) < 0.5)
                parts = [p.copy() for p in parts]
                for p in parts:
                    p[:, reset.numpy()] = 0.0
        y_s, fin_s, g_s = run(model, x, state, reset, "auto", mp)
        assert_same_run((y_s, fin_s, g_s), run(model, x, state, reset, "fused", mp))
        h0, c0 = (None, None) if parts is None else (parts[0], parts[1] if len(parts) > 1 else None)
        trace = reference.forward(reference.weights_of(model), cell, x.numpy(), h0=h0, c0=c0)
        assert np.abs(y_s.numpy() - trace.y).max() <= TOL
        assert np.abs(fin_s.h.numpy() - trace.final_h).max() <= TOL
    finally:
        mp.undo()


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn_tanh", "rnn_relu", "lstm_no_bias"])
def test_step_engine_is_the_fused_layer_without_onednn_bit_for_bit(kind):
    """float32: the cell function computes what the layer computes with oneDNN off (the same
    ATen cell), to the bit, gradients included; oneDNN differs only by rounding."""
    torch.manual_seed(4)
    cls = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU}.get(kind.split("_")[0], torch.nn.RNN)
    kw = {"nonlinearity": kind.split("_")[1]} if kind.startswith("rnn") else {}
    layer = cls(3, 7, batch_first=True, bias=not kind.endswith("no_bias"), **kw)
    x = torch.randn(5, 1, 3, requires_grad=True)
    h0 = torch.randn(1, 5, 7, requires_grad=True)
    hx = (h0, torch.randn(1, 5, 7)) if cls is torch.nn.LSTM else h0
    assert engine.choose(layer, x) == "step"
    got = []
    for which in ("step", "fused"):
        torch.backends.mkldnn.enabled = False
        try:
            out, hn = engine.run_layer(layer, x, hx, engine=which)
        finally:
            torch.backends.mkldnn.enabled = True
        hn = hn if isinstance(hn, tuple) else (hn,)
        loss = out.sin().sum() + sum(t.square().sum() for t in hn)
        got.append([out, *hn, *torch.autograd.grad(loss, [x, h0, *layer.parameters()])])
    for a, b in zip(*got):
        assert a.shape == b.shape and torch.equal(a, b)
    out, hn = engine.run_layer(layer, x, hx, engine="fused")  # oneDNN on: rounding apart
    assert (out - got[1][0]).abs().max() < 1e-6


def test_chooser_picks_the_step_engine_for_narrow_one_step_chunks_only():
    lstm = torch.nn.LSTM(1, 64, batch_first=True)
    assert engine.choose(lstm, torch.zeros(1, 1, 1)) == "step"  # per-step training, a stream
    assert engine.choose(lstm, torch.zeros(512, 1, 1)) == "step"  # 32,768 lanes x hidden
    assert engine.choose(lstm, torch.zeros(513, 1, 1)) == "fused"  # oneDNN's GEMMs win there
    assert engine.choose(lstm, torch.zeros(513, 1, 1), "step") == "step"  # forced
    assert engine.choose(lstm, torch.zeros(1, 2, 1)) == "fused"  # two steps: the layer
    assert engine.choose(lstm, torch.zeros(1, 2, 1), "step") == "fused"
    assert engine.choose(lstm, torch.zeros(1, 1, 1), "fused") == "fused"
    assert engine.choose(lstm, torch.zeros(1, 1, 1), "loop") == "loop"
    assert engine.choose(lstm, torch.zeros(1, 1, 1, dtype=torch.bfloat16)) == "fused"
    assert engine.choose(lstm, torch.empty(1, 1, 1, device="meta")) == "fused"  # off the CPU
    for layer in (torch.nn.GRU(1, 8, batch_first=True), torch.nn.RNN(1, 8, batch_first=True)):
        assert engine.choose(layer, torch.zeros(3, 1, 1)) == "step"
    for layer in (
        torch.nn.LSTM(1, 8, batch_first=True, num_layers=2),
        torch.nn.LSTM(1, 8, batch_first=True, bidirectional=True),
        torch.nn.LSTM(1, 8, batch_first=True, proj_size=4),
        torch.nn.LSTM(1, 8),  # time-major
    ):
        assert engine.choose(layer, torch.zeros(3, 1, 1)) == "fused"
    hooked = torch.nn.LSTM(1, 8, batch_first=True)
    hooked.register_forward_hook(lambda *a: None)  # the layer's own call runs the hook
    assert engine.choose(hooked, torch.zeros(3, 1, 1)) == "fused"


def test_loop_in_float32_is_close_to_fused():
    torch.manual_seed(0)
    layer = torch.nn.LSTM(3, 16, batch_first=True)
    x = torch.randn(5, 40, 3)
    out_f, (h_f, c_f) = layer(x)
    out_l, (h_l, c_l) = engine.lstm_loop(layer, x, None)
    assert (out_f - out_l).abs().max() < 1e-5
    assert (h_f - h_l).abs().max() < 1e-5 and (c_f - c_l).abs().max() < 1e-5


@pytest.mark.parametrize("groups", [2, 3, 7])
def test_lane_groups_equal_one_group_in_float32_and_leave_torchs_threads(groups):
    """Uneven groups (400 lanes in 3 or 7), a warm state, gradients: the split changes only
    the order dW is summed in; the caller's thread setting is the same afterwards."""
    torch.manual_seed(1)
    layer = torch.nn.LSTM(2, 24, batch_first=True)
    x = torch.randn(400, 33, 2, requires_grad=True)
    h0 = torch.randn(1, 400, 24, requires_grad=True)
    c0 = torch.randn(1, 400, 24, requires_grad=True)
    got = []
    before = torch.get_num_threads()
    for k in (1, groups):
        out, (hn, cn) = engine.lstm_loop(layer, x, (h0, c0), groups=k)
        loss = out.sin().sum() + hn.square().sum() + cn.sum()
        got.append([out, hn, cn, *torch.autograd.grad(loss, [x, h0, c0, *layer.parameters()])])
        assert torch.get_num_threads() == before
    for a, b in zip(*got):
        assert (a - b).abs().max() <= 1e-5 * max(1.0, b.abs().max().item())


def test_lane_groups_follow_the_thread_policy(monkeypatch):
    """threads=None: one group per CPU this process may use, fewer for narrow chunks, never
    more than the lanes; an explicit count (fit's threads=, the CLI's --threads) wins."""
    monkeypatch.setattr(threads, "cpus", lambda: 4)
    assert threads.workers() == 4
    assert engine.lane_groups(400, 64) == 4  # 25,600 lanes x hidden: 4 groups of >= 4,096
    assert engine.lane_groups(160, 64) == 2  # 10,240: 2 groups
    assert engine.lane_groups(50, 64) == 1
    with threads.using_workers(1):
        assert engine.lane_groups(400, 64) == 1
    with threads.using_workers(2):
        assert engine.lane_groups(400, 64) == 2
    threads.set_default(1)
    try:
        assert engine.lane_groups(400, 64) == 1
    finally:
        threads.set_default(None)
    with pytest.raises(ValueError, match="workers must be None"), threads.using_workers(0):
        pass


# --------------------------------------------------------------------------- the chooser
def test_chooser_picks_the_loop_for_large_cpu_training_chunks_only(monkeypatch):
    monkeypatch.setattr(threads, "cpus", lambda: 2)
    big = torch.nn.LSTM(1, 64, batch_first=True)
    mid = torch.zeros(200, 100, 1)  # 12,800 lanes x hidden: the loop only in lane groups
    assert engine.choose(big, mid) == "loop"
    with threads.using_workers(1):
        assert engine.choose(big, mid) == "fused"
        assert engine.choose(big, torch.zeros(400, 100, 1)) == "loop"  # 25,600: either way
    assert engine.choose(big, torch.zeros(100, 100, 1)) == "fused"  # 6,400: fused
    x = torch.zeros(400, 500, 1)
    assert engine.choose(big, x) == "loop"  # the seed-000 shape, training
    with torch.no_grad():
        assert engine.choose(big, x) == "fused"  # inference: the fused forward
    assert engine.choose(big, torch.zeros(4, 500, 1)) == "fused"  # few lanes
    assert engine.choose(big, torch.zeros(400, 8, 1)) == "fused"  # few steps
    assert engine.choose(big, x.to(torch.bfloat16)) == "fused"
    for cls in (torch.nn.GRU, torch.nn.RNN):  # cells the loop does not compute
        assert engine.choose(cls(1, 64, batch_first=True), x) == "fused"
    assert engine.choose(torch.nn.LSTM(1, 64, batch_first=True, num_layers=2), x) == "fused"
    assert engine.choose(big, x, "loop") == "loop" and engine.choose(big, x, "fused") == "fused"
    with pytest.raises(ValueError, match="engine must be one of"):
        engine.choose(big, x, "fast")


def test_chooser_keeps_the_fused_module_off_the_cpu():
    """On CUDA (here any non-CPU device) the fused module, cuDNN there, is always the choice."""
    big = torch.nn.LSTM(1, 64, batch_first=True)
    x = torch.empty(400, 500, 1, device="meta")
    assert engine.choose(big, x) == "fused"
    assert engine.choose(big, x, "loop") == "fused"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_chooser_picks_cudnn_on_cuda():
    big = torch.nn.LSTM(1, 64, batch_first=True).cuda()
    assert engine.choose(big, torch.zeros(400, 500, 1, device="cuda")) == "fused"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_lane_groups_work_in_a_forked_child_after_the_parent_used_them():
    """A forked child inherits the parent's thread pool without its threads: it makes its own."""
    layer = torch.nn.LSTM(1, 8, batch_first=True)
    x = torch.randn(6, 5, 1)
    want = engine.lstm_loop(layer, x, None, groups=2)[0].detach()  # the parent's pool exists
    pid = os.fork()
    if pid == 0:  # the child: exit 0 only if the split runs and agrees
        ok = False
        try:
            got = engine.lstm_loop(layer, x, None, groups=2)[0].detach()
            ok = bool((got - want).abs().max() < 1e-6)
        finally:
            os._exit(0 if ok else 1)
    deadline = time.monotonic() + 60  # a child stuck on the parent's dead pool would hang
    while (done := os.waitpid(pid, os.WNOHANG))[0] == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    if done[0] == 0:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        pytest.fail("the forked child's lane groups did not finish in 60 s")
    assert os.WIFEXITED(done[1]) and os.WEXITSTATUS(done[1]) == 0


def test_compiled_steps_equal_the_python_steps_bit_for_bit():
    """TorchScript runs the same step code (without the GIL): identical numbers, dx included."""
    fwd, bwd = engine._steps()
    assert isinstance(fwd, torch.jit.ScriptFunction), engine._COMPILE_ERROR  # the fast path
    py_fwd, py_bwd = engine._steps(compiled=False)
    assert py_fwd is engine._forward_steps
    torch.manual_seed(2)
    steps, batch, f_in, h = 9, 5, 3, 4
    w, b = torch.randn(4 * h, f_in + h, dtype=torch.float64), torch.randn(4 * h, dtype=torch.float64)
    got = []
    # the compiled pair three times: TorchScript profiles the first runs and optimises after
    for f, bw in ((py_fwd, py_bwd), (fwd, bwd), (fwd, bwd), (fwd, bwd)):
        xh = torch.zeros(steps + 1, batch, f_in + h, dtype=torch.float64)
        xh[:steps, :, :f_in] = torch.linspace(-2, 2, steps * batch * f_in).view(steps, batch, f_in)
        xh[0, :, f_in:] = 0.3
        cs = torch.zeros(steps + 1, batch, h, dtype=torch.float64)
        cs[0] = -0.2
        with torch.no_grad():
            f(xh, cs, w, b)
            d_out = torch.cos(xh[1:, :, f_in:] * 3)
            dx = torch.empty(steps, batch, f_in, dtype=torch.float64)
            dh0, dc0 = torch.empty(batch, h, dtype=torch.float64), torch.empty_like(cs[0])
            dw, db = bw(xh, cs, w, b, d_out, cs[-1] * 0.5, None, dx, dh0, dc0)
        got.append((xh, cs, dx, dh0, dc0, dw, db))
    for run in got[1:]:
        for a, c in zip(got[0], run):
            assert torch.equal(a, c)


def test_the_python_steps_are_used_when_torchscript_is_turned_off(monkeypatch):
    monkeypatch.setenv("STATEFULRNN_NO_TORCHSCRIPT", "1")
    assert engine._steps() == (engine._forward_steps, engine._backward_steps)


def test_lane_groups_leave_new_threads_torchs_count():
    """Pool threads run at one intra-op thread; threads started afterwards get the caller's."""
    import threading

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        for pool in threads._helpers.values():
            pool.shutdown(wait=True)
        threads._forget_helpers()  # fresh helper threads, which set their own count
        layer = torch.nn.LSTM(1, 4, batch_first=True)
        engine.lstm_loop(layer, torch.randn(6, 3, 1), None, groups=3)
        assert torch.get_num_threads() == 2
        seen = []
        t = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
        t.start()
        t.join()
        assert seen == [2]
    finally:
        torch.set_num_threads(before)


def test_the_loop_keeps_one_lane_group_off_the_cpu(monkeypatch):
    """Lane groups are for CPU cores: on another device (meta here) the loop never splits."""
    seen = []

    class Seen(Exception):
        pass

    def spy(x, w, b, h0, c0, k):
        seen.append(k)
        raise Seen

    monkeypatch.setattr(engine._LSTMLoop, "apply", spy)
    for device in ("cpu", "meta"):
        layer = torch.nn.LSTM(1, 64, batch_first=True, device=device)
        with threads.using_workers(2), pytest.raises(Seen):
            engine.lstm_loop(layer, torch.zeros(400, 10, 1, device=device), None)
    assert seen == [2, 1]


def test_a_torchscript_refusal_is_said_once_and_the_python_steps_run(monkeypatch):
    """A refusal (e.g. the source file changed under a running process) used to fall back in
    silence, and lane groups lost their parallel speed without a word."""
    import warnings

    def refuse(fn):
        raise RuntimeError("can't get source code\nmore detail")

    monkeypatch.delenv("STATEFULRNN_NO_TORCHSCRIPT", raising=False)
    monkeypatch.setattr(engine, "_COMPILED", [])
    monkeypatch.setattr(engine, "_COMPILE_ERROR", [])
    monkeypatch.setattr(torch.jit, "script", refuse)
    with pytest.warns(RuntimeWarning, match=r"could not compile .*RuntimeError: can't get source"):
        assert engine._steps() == (engine._forward_steps, engine._backward_steps)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # said once per process
        assert engine._steps() == (engine._forward_steps, engine._backward_steps)
    assert "can't get source" in str(engine._COMPILE_ERROR[0])
