"""fit against independent oracles: gradients, the seeds' tasks, and the errors a bad call gets.

Gradients are checked in float64 against plain torch autograd on the model's own full
forward (no schedule, no fit): full-sequence BPTT when one chunk holds every sequence, and
the sum of per-chunk gradients from detached states when the window is shorter. The seed
tasks (moving average, first bit) are small enough to train in seconds.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import PoisonAfter, make_rnn, recorded_grads, summed

import statefulrnn as sr
from statefulrnn.model import cells

GRAD_TOL = 1e-10


def make_model(cell="lstm", *, input_size=2, hidden=4, output_size=2, layers=1, seed=0):
    return make_rnn(
        input_size, hidden, output_size, cell, seed=seed, num_layers=layers, dtype=torch.float64
    )


def make_sequences(lengths, *, features=2, outputs=2, seed=0, weights="random"):
    """Random inputs and targets; weights random in {0, 0.5, 1, 2} or by time only."""
    rng = np.random.default_rng(seed)
    xs = [rng.normal(size=(t, features)) for t in lengths]
    ys = [rng.normal(size=(t, outputs)) for t in lengths]
    if weights == "random":
        ws = [rng.choice([0.0, 0.5, 1.0, 2.0], size=t) for t in lengths]
        for w in ws:
            w[-1] = 1.0  # every sequence scores something
    else:  # depends on the time step only, so every chunk layout has the same chunk norms
        ws = [np.where(np.arange(t) < 2, 0.0, 1.0 + (np.arange(t) % 3)) for t in lengths]
    return sr.Sequences.from_arrays(xs, ys, weights=ws)


def seq_tensors(item):
    x = torch.from_numpy(item.x)
    return x, torch.from_numpy(item.y), torch.from_numpy(item.w)


def mse_sum(y_hat, y, w):
    """Weighted sum of per-step MSE, written out here rather than taken from the package."""
    return (((y_hat - y) ** 2).mean(-1) * w).sum()


def truncated_oracle(model, seqs, window) -> list[torch.Tensor]:
    """Sum over chunks of d(chunk loss / chunk weight): each chunk of `window` steps starts
    from the state of a no-grad full forward over the steps before it (one lane: a chunk is
    one piece of one sequence)."""
    params = list(model.parameters())
    total = [torch.zeros_like(p) for p in params]
    for item in seqs:
        x, y, w = seq_tensors(item)
        for a in range(0, len(x), window):
            b = min(a + window, len(x))
            norm = w[a:b].sum()
            if norm == 0:
                continue
            state = None
            if a > 0:
                with torch.no_grad():
                    _, state = model(x[None, :a])
            y_hat, _ = model(x[None, a:b], state)
            loss = mse_sum(y_hat[0], y[a:b], w[a:b]) / norm
            for t, g in zip(total, torch.autograd.grad(loss, params, allow_unused=True)):
                if g is not None:
                    t += g
    return total


def max_diff(xs, ys) -> float:
    return max(float((a - b).abs().max()) for a, b in zip(xs, ys))


# --------------------------------------------------------------------------- 1. gradients
@pytest.mark.parametrize("cell,layers", [(c, 1 + i % 2) for i, c in enumerate(cells.names())])
def test_one_chunk_update_is_full_sequence_bptt(cell, layers):
    """window >= T and all sequences in one chunk: one SGD step moves the weights by -lr times
    the gradient of the weighted mean loss of a whole-sequence forward."""
    seqs = make_sequences([7, 12, 3, 12, 9])
    model = make_model(cell, layers=layers)
    before = [p.detach().clone() for p in model.parameters()]

    # the oracle: plain autograd through each whole sequence, weighted mean over all of them
    params = list(model.parameters())
    total_loss = sum(mse_sum(model(x[None])[0][0], y, w) for x, y, w in map(seq_tensors, seqs))
    total_weight = sum(float(w.sum()) for w in seqs.ws)
    oracle = torch.autograd.grad(total_loss / total_weight, params)

    lr = 0.5
    history = sr.fit(
        model, seqs, mode="stateful", window=16, batch_size=8, epochs=1,
        optimizer="sgd", lr=lr, verbose=0,
    )  # fmt: skip
    update = [(b - p.detach()) / lr for b, p in zip(before, model.parameters())]
    assert max_diff(update, oracle) <= GRAD_TOL
    assert max(float(g.abs().max()) for g in oracle) > 1e-3  # a real gradient, not zeros
    # the epoch's loss is the weighted mean over every scored step, as computed by hand
    assert history[0]["loss"] == pytest.approx(float(total_loss.detach()) / total_weight, rel=1e-12)
    assert history[0]["scored_steps"] == sum(int((w > 0).sum()) for w in seqs.ws)


@pytest.mark.parametrize("window", [1, 3, 5, 16])  # 16 >= T: one chunk per sequence, full BPTT
@pytest.mark.parametrize("cell", cells.names())
def test_truncated_gradient_is_sum_of_per_chunk_gradients_from_detached_state(window, cell):
    """One lane, variable lengths (several sequences share the lane, so resets happen)."""
    seqs = make_sequences([7, 12, 3, 10])
    model = make_model(cell)
    oracle = truncated_oracle(model, seqs, window)
    grads = recorded_grads(model, seqs, mode="stateful", window=window, batch_size=1)
    expected_updates = sum(
        sum(1 for a in range(0, len(w), window) if w[a : a + window].sum() > 0) for w in seqs.ws
    )
    assert len(grads) == expected_updates
    assert max_diff(summed(grads), oracle) <= GRAD_TOL


def test_truncated_gradient_with_many_lanes():
    """Three lanes and six equal sequences: each lane runs two, reset between them. Weights
    depend on time only, so a chunk's weight is 3x one sequence's piece whatever the order."""
    seqs = make_sequences([11] * 6, weights="by_time")
    model = make_model("lstm", layers=2)
    per_lane = truncated_oracle(model, seqs, 4)
    oracle = [g / 3 for g in per_lane]  # chunk norm: three lanes' pieces, not one
    grads = recorded_grads(model, seqs, mode="stateful", window=4, batch_size=3)
    assert len(grads) == 2 * 3  # two sequences per lane, three chunks each
    assert max_diff(summed(grads), oracle) <= GRAD_TOL


def lane_layout(lengths, window, lanes):
    """Chunk of each sequence's first piece, with shuffle=False: in order, each sequence goes
    to the lane that is free first (ties: the lowest lane), as the schedule documents."""
    free = [0] * lanes
    first = []
    for t in lengths:
        lane = min(range(lanes), key=lambda b: (free[b], b))
        first.append(free[lane])
        free[lane] += -(-t // window)
    return first


def test_each_update_is_its_chunks_truncated_gradient_with_lanes_resetting_apart():
    """Two lanes whose sequences end at different chunks (a reset in one lane, not the other):
    every optimizer update, one by one, equals the chunk's oracle gradient."""
    lengths = [7, 12, 3, 10, 5]
    window = 3
    seqs = make_sequences(lengths)
    model = make_model("lstm", layers=2)
    grads = recorded_grads(model, seqs, mode="stateful", window=window, batch_size=2, shuffle=False)

    params = list(model.parameters())
    first = lane_layout(lengths, window, 2)
    pieces: dict[int, list] = {}  # chunk -> (sequence, a, b) pieces in it
    for i, t in enumerate(lengths):
        for j, a in enumerate(range(0, t, window)):
            pieces.setdefault(first[i] + j, []).append((i, a, min(a + window, t)))
    expected = []
    for k in sorted(pieces):
        norm = sum(float(seqs.ws[i][a:b].sum()) for i, a, b in pieces[k])
        if norm == 0:
            continue
        loss = 0.0
        for i, a, b in pieces[k]:
            x, y, w = seq_tensors(seqs[i])
            state = None
            if a > 0:
                with torch.no_grad():
                    _, state = model(x[None, :a])
            loss = loss + mse_sum(model(x[None, a:b], state)[0][0], y[a:b], w[a:b])
        expected.append(torch.autograd.grad(loss / norm, params))
    assert any(len({first[i] for i, *_ in pieces[k]}) > 1 for k in pieces)  # lanes out of step
    assert len(grads) == len(expected)
    for got, want in zip(grads, expected):
        assert max_diff(got, want) <= GRAD_TOL


def test_stateful_update_differs_from_stateless_on_the_same_windows():
    """Sanity for the oracle above: carrying state changes the gradient (else the test is void)."""
    seqs = make_sequences([12, 12])
    model = make_model("lstm")
    stateful = summed(recorded_grads(model, seqs, mode="stateful", window=4, batch_size=1))
    stateless = summed(recorded_grads(model, seqs, mode="stateless", window=4, batch_size=1))
    assert max_diff(stateful, stateless) > 1e-4


# --------------------------------------------------------------------------- 2. the seed tasks
def moving_average_data(input_len=1000, tsteps=2, seed=1986):
    """Seed 002/003: uniform noise in [-0.1, 0.1]; target at step t = mean of x[t-tsteps+1..t].
    lahead=1: a stateless model sees one input per output (window 1); the first tsteps-1
    points (NaN targets) are dropped, as the example does. 80 % train, 20 % test, in order."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-0.1, 0.1, input_len + tsteps - 1)
    y = np.convolve(x, np.ones(tsteps) / tsteps, mode="valid")  # y[j] = mean(x[j..j+tsteps-1])
    x = x[tsteps - 1 :]
    n_train = int(input_len * 0.8)
    return (x[:n_train], y[:n_train]), (x[n_train:], y[n_train:])


@pytest.mark.slow  # > 20 s on the shared 2-core machine
def test_moving_average_stateful_beats_stateless():
    (xtr, ytr), (xte, yte) = moving_average_data()
    assert np.allclose(ytr[1:], (xtr[1:] + xtr[:-1]) / 2)
    # two lanes (the train series in two halves) make the per-step run twice as fast
    train = sr.Sequences.from_arrays(list(xtr.reshape(2, -1, 1)), list(ytr.reshape(2, -1, 1)))
    w = np.ones(len(xte))
    w[0] = 0  # the first test step needs the input before the test series
    test = sr.Sequences.from_arrays([xte[:, None]], [yte[:, None]], weights=[w])
    settings = dict(window=1, batch_size=2, epochs=10, lr=3e-3, seed=0, verbose=0)

    torch.manual_seed(0)
    stateful = sr.StatefulRNN(1, 20, 1)
    sr.fit(stateful, train, mode="stateful", shuffle=False, **settings)
    torch.manual_seed(0)
    stateless = sr.StatefulRNN(1, 20, 1)
    # a one-input model is at its floor within a few hundred updates: batch the windows
    sr.fit(stateless, train, mode="stateless", **{**settings, "batch_size": 50, "lr": 1e-2})

    mse_stateful = sr.evaluate(stateful, test, mode="stateful")["loss"]
    mse_stateless = sr.evaluate(stateless, test, mode="windowed", window=1)["loss"]
    floor = 0.2**2 / 12 / 4  # best a one-input model can do: the unseen x[t-1] / 2
    print(
        f"moving average test MSE: stateful {mse_stateful:.3g}, stateless {mse_stateless:.3g} "
        f"(one-input floor {floor:.3g}), ratio {mse_stateless / mse_stateful:.1f}"
    )
    assert mse_stateless > 0.8 * floor
    assert mse_stateful < mse_stateless / 2


def first_bit_data(n, seed, steps=20):
    """Seed 001: x zeros with x[i, 0] = 1 for a random half; the target is x[i, 0] at every step."""
    rng = np.random.default_rng(seed)
    x = np.zeros((n, steps, 1))
    x[:, 0, 0] = rng.permutation(n) < n // 2
    return x, np.repeat(x[:, :1, :], steps, axis=1)


def per_step_oracle(model, x, y, optimizer: str, lr: float) -> list[float]:
    """Seed 001's recipe written out in plain PyTorch: one sequence at a time, one update per
    step, the state carried (detached) and zeroed per sequence; each layer called as itself
    (nn.LSTM, oneDNN and all), torch's optimizer on its own defaults (a loop over the
    parameters), zero_grad as torch does it. Returns each update's loss."""
    lstm, head = model.layers[0], model.head
    make = {"adam": torch.optim.Adam, "sgd": torch.optim.SGD, "rmsprop": torch.optim.RMSprop}
    opt = make[optimizer](model.parameters(), lr=lr)
    xt, yt = torch.from_numpy(x).to(model.dtype), torch.from_numpy(y).to(model.dtype)
    losses = []
    for i in range(len(xt)):
        state = None
        for t in range(xt.shape[1]):
            out, state = lstm(xt[i : i + 1, t : t + 1], state)
            loss = torch.nn.functional.binary_cross_entropy_with_logits(
                head(out), yt[i : i + 1, t : t + 1]
            )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(loss.item())
            state = (state[0].detach(), state[1].detach())
    return losses


# float32: lr 1e-3 (seed 001's): Adam's steps are ~lr whatever the gradient, so rounding
# differences grow with lr (1.04e-6 at lr 1e-2 after these 240 updates)
@pytest.mark.parametrize(
    "dtype,tol,lr", [(torch.float64, 1e-10, 1e-2), (torch.float32, 1e-6, 1e-3)]
)
@pytest.mark.parametrize("optimizer", ["adam", "sgd", "rmsprop"])
def test_per_step_training_is_the_hand_written_per_step_loop(dtype, tol, lr, optimizer):
    """window 1, batch 1 (the one-step engine, a fused or foreach optimizer): the parameters and the
    epoch's loss of the plain loop above, to float rounding, after 240 updates."""
    x, y = first_bit_data(12, seed=3)
    got = make_rnn(1, 6, 1, seed=5, dtype=dtype)
    want = make_rnn(1, 6, 1, seed=5, dtype=dtype)
    h = sr.fit(got, sr.Sequences.from_arrays(x, y), window=1, batch_size=1, epochs=1,
               loss="bce", optimizer=optimizer, lr=lr, shuffle=False, verbose=0)  # fmt: skip
    losses = per_step_oracle(want, x, y, optimizer, lr=lr)
    assert len(losses) == 240
    for (name, a), b in zip(got.named_parameters(), want.parameters()):
        assert (a - b).abs().max() <= tol, name
    assert h[0]["loss"] == pytest.approx(np.mean(losses), rel=tol, abs=0)
    moved = max(float((a - b).detach().abs().max()) for a, b in
                zip(got.parameters(), make_rnn(1, 6, 1, seed=5, dtype=dtype).parameters()))  # fmt: skip
    assert moved > 10 * lr  # the weights did train


def test_first_bit_stateful_learns_it_stateless_windows_cannot():
    xtr, ytr = first_bit_data(600, seed=1)
    xv, yv = first_bit_data(200, seed=2)
    train = sr.Sequences.from_arrays(xtr, ytr)
    val = sr.Sequences.from_arrays(xv, yv)

    torch.manual_seed(0)
    stateful = sr.StatefulRNN(1, 10, 1)
    h = sr.fit(
        stateful, train, val, mode="stateful", window=5, batch_size=50, epochs=5,
        loss="bce", lr=1e-2, seed=0, verbose=0,
    )  # fmt: skip
    # Remy's stateless run: every window of 10 (stride 1), scored at its last step only; so is
    # its validation (the steps that end a window: 9..19)
    w_end = np.zeros(yv.shape[:2])
    w_end[:, 9:] = 1
    val_end = sr.Sequences.from_arrays(xv, yv, weights=w_end)
    torch.manual_seed(0)
    stateless = sr.StatefulRNN(1, 10, 1)
    h2 = sr.fit(
        stateless, train, val_end, mode="stateless", window=10, stride=1, target="last",
        batch_size=100, epochs=3, loss="bce", lr=1e-2, seed=0, verbose=0,
    )  # fmt: skip
    acc_stateful = h.last["val_accuracy"]
    acc_windowed = h2.last["val_accuracy_windowed"]
    print(
        f"first bit val accuracy: stateful {acc_stateful:.4f}; stateless windows of 10 "
        f"{acc_windowed:.4f} (the same stateless model predicting statefully: "
        f"{h2.last['val_accuracy']:.4f})"
    )
    assert acc_stateful >= 0.99
    assert acc_windowed < 0.7
    # every val step scored once, in both modes
    assert sr.evaluate(stateful, val, loss="bce")["accuracy"] == acc_stateful


# --------------------------------------------------------------------------- 5. errors
@pytest.fixture
def data():
    return make_sequences([6, 4], features=2, outputs=2)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"mode": "statefull"}, "unknown mode 'statefull'"),
        ({"loss": "mae"}, "unknown loss 'mae'"),
        ({"optimizer": "adagrad"}, "unknown optimizer 'adagrad'"),
        ({"window": 0}, "window must be an integer >= 1; received 0"),
        ({"window": 2.5}, "window must be an integer >= 1; received 2.5"),
        ({"batch_size": 0}, "batch_size must be an integer >= 1; received 0"),
        ({"lr": -1.0}, "lr must be a positive number"),
        ({"clip": 0.0}, "clip must be a positive gradient norm"),
        ({"window": 4, "backprop": 3}, "backprop must be an integer >= window (4); received 3"),
        ({"mode": "stateless", "backprop": 8}, "backprop (k2 of TBPTT) applies to mode='stateful'"),
        ({"burn_in": 3}, "burn_in applies to mode='stateless'"),
        ({"mode": "stateless", "burn_in": -1}, "burn_in must be an integer >= 0 or 'all'"),
        ({"mode": "stateless", "target": "first"}, "target must be one of"),
        ({"mode": "stateless", "stride": 0}, "stride must be an integer >= 1"),
        ({"metrics": ["accuracy"]}, "metric 'accuracy' needs loss 'bce' or 'ce'"),
        ({"metrics": ["f1"]}, "unknown metric 'f1'"),
    ],
)
def test_bad_arguments_say_what_is_wrong(data, kwargs, message):
    model = make_model()
    before = model.identity()
    with pytest.raises(ValueError) as err:
        sr.fit(model, data, epochs=1, verbose=0, **kwargs)
    assert message in str(err.value)
    assert model.identity() == before  # nothing trained


def test_bad_data_says_which_sequence_and_step():
    model = make_model(output_size=1)
    x = [np.zeros((5, 2)), np.zeros((4, 2))]
    y_bad = [np.zeros((5, 1)), np.array([[0.0], [1.0], [1.5], [0.0]])]
    with pytest.raises(
        ValueError, match=r"loss 'bce' needs targets in \[0, 1\].*sequence 1.*step 2"
    ):
        sr.fit(model, sr.Sequences.from_arrays(x, y_bad), loss="bce", verbose=0)
    # a target outside [0, 1] at an unscored step is not an error
    w = [np.ones(5), np.array([1.0, 1.0, 0.0, 1.0])]
    sr.fit(model, sr.Sequences.from_arrays(x, y_bad, weights=w), loss="bce", epochs=0, verbose=0)

    classes = sr.StatefulRNN(2, 4, 3, dtype=torch.float64)
    y_ce = [np.array([[0.0], [2.0], [1.0], [0.5], [1.0]]), np.zeros((4, 1))]
    with pytest.raises(ValueError, match=r"class indices 0..2, but sequence 0 has 0.5 at step 3"):
        sr.fit(classes, sr.Sequences.from_arrays(x, y_ce), loss="ce", verbose=0)
    y_ce[0][3] = 3.0
    with pytest.raises(ValueError, match=r"class indices 0..2, but sequence 0 has 3.0 at step 3"):
        sr.fit(classes, sr.Sequences.from_arrays(x, y_ce), loss="ce", verbose=0)

    # the model's input_size against the data, for train and for val
    train = sr.Sequences.from_arrays(x, [np.zeros((5, 1)), np.zeros((4, 1))])
    val3 = sr.Sequences.from_arrays([np.zeros((5, 3))], [np.zeros((5, 1))])
    with pytest.raises(ValueError, match=r"val has 3 features per step but the model expects 2"):
        sr.fit(model, train, val3, verbose=0)
    with pytest.raises(ValueError, match=r"train has 3 features per step but the model expects 2"):
        sr.fit(model, val3, verbose=0)
    with pytest.raises(ValueError, match=r"targets have 2 values per step but the model outputs 1"):
        sr.fit(model, sr.Sequences.from_arrays(x, [np.zeros((5, 2)), np.zeros((4, 2))]), verbose=0)
    with pytest.raises(TypeError, match=r"train must be a statefulrnn.Sequences"):
        sr.fit(model, (x, y_bad), verbose=0)


def test_diverging_loss_names_epoch_and_chunk_and_restores_the_model(tmp_path):
    seqs = make_sequences([12] * 4)  # 2 lanes x 2 sequences x 3 chunks: 6 chunks per epoch
    model = make_model()
    ckpt = tmp_path / "ckpt"
    settings = dict(window=4, batch_size=2, checkpoint=ckpt, verbose=0)

    def harmless(params):
        return PoisonAfter(params, 10**9)

    def poison(params):  # the same name, so the checkpoint's config matches and it resumes
        return PoisonAfter(params, 2)

    poison.__name__ = harmless.__name__
    sr.fit(model, seqs, epochs=1, optimizer=harmless, **settings)
    after_epoch_0 = {k: v.clone() for k, v in model.state_dict().items()}

    with pytest.raises(sr.TrainingDiverged) as err:
        sr.fit(model, seqs, epochs=3, optimizer=poison, resume=True, **settings)
    msg = str(err.value)
    # the poisoned weight makes chunk 2 of epoch 1 the first non-finite loss (0-based)
    assert "the loss became" in msg and "at epoch 1, chunk 2 of 6" in msg
    assert "lower lr" in msg and "restored to its weights at the start of epoch 1" in msg
    assert f"The last good checkpoint in {ckpt} is kept" in msg
    # the weights at the start of the failed epoch are back (the run resumed from epoch 0's)
    for k, v in model.state_dict().items():
        assert torch.equal(v, after_epoch_0[k]), k
    saved = sr.load_model(ckpt)
    for k, v in saved.state_dict().items():
        assert torch.equal(v, after_epoch_0[k]), k


def test_huge_learning_rate_diverges_cleanly():
    seqs = make_sequences([20] * 4)
    model = make_model()
    start = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(sr.TrainingDiverged, match=r"at epoch 0, chunk \d+ of 5"):
        sr.fit(model, seqs, window=4, batch_size=4, epochs=2, optimizer="sgd", lr=1e200,
               verbose=0)  # fmt: skip
    for k, v in model.state_dict().items():
        assert torch.equal(v, start[k]), k
        assert torch.isfinite(v).all()


# --------------------------------------------------------------------------- odds and ends
def test_history_records_and_table():
    seqs = make_sequences([9, 5, 7])
    val = make_sequences([6, 8], seed=1)
    model = make_model()
    h = sr.fit(model, seqs, val, mode="stateless", window=3, batch_size=2, epochs=2, verbose=0)
    assert h.column("epoch") == [1, 2]  # numbered as the console prints them
    for row in h:
        assert set(row) == {
            "epoch", "loss", "val_loss", "val_loss_windowed", "seconds", "scored_steps",
        }  # fmt: skip
        assert row["scored_steps"] == sum(int((w > 0).sum()) for w in seqs.ws)
    # the last epoch's validation losses are the model's as it ends
    assert h.last["val_loss"] == sr.evaluate(model, val, mode="stateful")["loss"]
    assert h.last["val_loss_windowed"] == sr.evaluate(model, val, mode="windowed", window=3)["loss"]
    # a stateless model is evaluated as it was trained by default: windowed, its window
    assert h.last["val_loss_windowed"] == sr.evaluate(model, val)["loss"]
    table = h.table().splitlines()
    assert len(table) == 3 and "val_loss_windowed" in table[0]


def test_zero_epochs_and_optimizer_factory_and_early_stopping():
    seqs = make_sequences([9, 5, 7])
    model = make_model()
    before = model.identity()
    assert sr.fit(model, seqs, epochs=0, verbose=0) == []
    assert model.identity() == before
    stop = sr.EarlyStopping(monitor="loss", patience=1, min_delta=1e9)
    h = sr.fit(model, seqs, epochs=5, window=3, batch_size=2, callbacks=[stop], verbose=0,
               optimizer=lambda p: torch.optim.SGD(p, lr=0.1))  # fmt: skip
    assert len(h) == 2  # epoch 0 sets the best, epoch 1 fails to beat it by 1e9


def test_verbose_prints_one_line_per_epoch(capsys):
    seqs = make_sequences([9, 5, 7])
    sr.fit(make_model(), seqs, epochs=2, window=3, verbose=1)
    out = capsys.readouterr().out.splitlines()
    assert [line.split("  ")[0] for line in out] == ["epoch 1/2", "epoch 2/2"]


def test_train_config_is_frozen_and_complete():
    cfg = sr.TrainConfig()
    with pytest.raises(AttributeError):
        cfg.window = 3  # type: ignore[misc]
    assert {"mode", "window", "batch_size", "backprop", "burn_in", "seed"} <= set(vars(cfg))
