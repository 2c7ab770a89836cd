"""Each task's generator matches its seed's definition, exactly."""

from __future__ import annotations

import numpy as np
import pytest

from statefulrnn.tasks import TASKS, first_bit, get_task, lagged_product, moving_average, sine


def test_lagged_product_definition():
    p = get_task("lagged-product").resolve(quick=True, overrides={"n_series": "20", "n_test": "5"})
    seqs = lagged_product.make_series(20, p, np.random.default_rng(3))
    d, t_len = p["D"], p["T"]
    t = np.arange(t_len)
    for x, y, w in zip(seqs.xs, seqs.ys, seqs.ws):
        x, y = x[:, 0], y[:, 0]
        assert np.array_equal(y[d:], x[d - 2 : t_len - 2] * x[: t_len - d])  # Y_t = X_{t-2}·X_{t-D}
        assert np.all(y[:d] == 0) and np.all(w[:d] == 0) and np.all(w[d:] == 1)
        # X_t = -(t/T)·U·cos(t/(1+C)) for some C in 5..99 and U in [0, 1]
        fits = []
        for c in range(5, 100):
            base = -(t / t_len) * np.cos(t / (1.0 + c))
            u = x[1:] @ base[1:] / (base[1:] @ base[1:])
            fits.append((np.abs(x - u * base).max(), u))
        err, u = min(fits)
        assert err < 1e-12 and 0 <= u <= 1


def test_lagged_product_test_series_are_fresh():
    task = get_task("lagged-product")
    data = task.generate(task.resolve(quick=True, overrides={"n_series": "20", "n_test": "20"}), 0)
    train_x = {tuple(np.round(x[:50, 0], 12)) for x in data.train.xs + data.val.xs}
    assert not any(tuple(np.round(x[:50, 0], 12)) in train_x for x in data.test.xs)


def test_first_bit_definition():
    seqs = first_bit.make_series(50, 20, np.random.default_rng(0))
    firsts = np.array([x[0, 0] for x in seqs.xs])
    assert firsts.sum() == 25  # a random half
    for x, y in zip(seqs.xs, seqs.ys):
        assert np.all(x[1:] == 0) and np.all(y[:, 0] == x[0, 0])


def test_first_bit_beyond_window_scores_only_late_steps():
    seqs = first_bit.beyond(first_bit.make_series(4, 20, np.random.default_rng(0)), 10)
    for w in seqs.ws:
        assert np.all(w[:10] == 0) and np.all(w[10:] == 1)


@pytest.mark.parametrize("tsteps", [1, 2, 5])
def test_moving_average_definition(tsteps):
    p = get_task("moving-average").resolve(overrides={"tsteps": str(tsteps), "input_len": "200"})
    x, y = moving_average.series(p, np.random.default_rng(1))
    assert len(x) == len(y) == 200 and np.all(np.abs(x) <= 0.1)
    rng = np.random.default_rng(1)  # the same draws, kept whole: tsteps - 1 extra at the start
    raw = rng.uniform(-0.1, 0.1, size=200 + tsteps - 1)
    for t in range(200):
        assert x[t] == raw[t + tsteps - 1]
        assert y[t] == pytest.approx(raw[t : t + tsteps].mean(), abs=1e-15)


def test_moving_average_floor():
    p = get_task("moving-average").resolve()
    # y = (x_t + x_{t-1}) / 2 seen through x_t only: error x_{t-1}/2, variance (0.2²/12)/4
    assert moving_average.floor_mse(p, 1) == pytest.approx(0.2**2 / 12 / 4)


def test_sine_definition():
    p = get_task("sine").resolve()
    s = sine.wave(p)
    assert len(s) == 5001
    assert np.allclose(s[:10], np.sin(np.arange(10) * 2 * np.pi / 10)) and np.allclose(
        s[10:20], s[:10]
    )
    data = sine.generate(p, 0)
    (x,) = data.train.xs
    (y,) = data.train.ys
    assert np.array_equal(y[:-1, 0], x[1:, 0])  # predict the next value
    assert len(x) + 1 == int(5001 * 0.75)


def test_every_task_resolves_and_lists_configs():
    for task in TASKS.values():
        quick = task.resolve(quick=True)
        names = [c.name for c in task.configs(quick)]
        assert len(names) == len(set(names)) >= 3
        assert any(c.origin == "statefulrnn" for c in task.configs(quick))


def test_unknown_task_and_parameter_errors():
    with pytest.raises(ValueError, match="Did you mean 'first-bit'"):
        get_task("first")
    with pytest.raises(ValueError, match="has no parameter 'epoch'.*Did you mean 'epochs"):
        get_task("sine").resolve(overrides={"epoch": "3"})
    with pytest.raises(ValueError, match="expected a int"):
        get_task("sine").resolve(overrides={"epochs": "many"})


@pytest.mark.parametrize(
    "stateful, stateless, says",
    [
        (1e-6, 1e-3, "1000x lower"),  # below the converged bar: no caveat
        (5e-4, 1e-3, "not confirmed"),  # helps, but above the bar: the answer says so
        (2e-3, 1e-3, "did not help"),  # worse with state: the answer does not claim help
    ],
)
def test_moving_average_answer_follows_the_numbers(stateful, stateless, says):
    p = {k: v.quick for k, v in moving_average.PARAMS.items()}
    limit = moving_average.CONVERGED * moving_average.floor_mse(p, p["tsteps"] - 1)
    results = {
        "configs": {
            "stateful-seed": {"test": {"stateful": {"loss": stateful}}},
            "stateless-seed": {"test": {"windowed": {"loss": stateless}}},
        }
    }
    text = moving_average.answer(p, results)
    assert says in text
    assert ("not confirmed" in text) == (stateless > stateful >= limit)
    assert ("only the stateful model sees" in text) == (stateful < stateless)
