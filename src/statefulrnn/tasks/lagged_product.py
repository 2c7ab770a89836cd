"""lagged-product (seed 000, Yumi's "Stateful LSTM model training in Keras").

X_t = -(t/T)·U·cos(t/(1+C)) with C drawn from {5..99} and U ~ Unif[0, 1] per series;
Y_t = X_{t-2}·X_{t-D} for t >= D, else 0, and steps t < D are not scored. A model must
remember D = 100 steps. Seed: T = 1000, 1000 series (800 train / 200 val), LSTM(64) + per-step
Dense(1), rmsprop, MSE, batch 400; stateless on whole series: val MSE 0.004058 on 5000 test
series after 100 epochs. Predicting 0 everywhere scores about 0.0072, the plateau the seed's
model left only around epoch 28 (and today's Keras never leaves). The seed generated its test
series with the training seed, so they repeated the training ones; ours are fresh.
"""

from __future__ import annotations

import numpy as np

from statefulrnn.data.sequences import Sequences
from statefulrnn.tasks.base import (
    NEEDS_FULL_RUN,
    Claim,
    Config,
    Param,
    Task,
    TaskData,
    needs_full_run,
    skipped,
)

PARAMS = {
    "D": Param(100, 100, "lag of the second factor (the memory needed)"),
    "T": Param(1000, 1000, "steps per series"),
    "n_series": Param(1000, 250, "training + validation series (80/20)"),
    "n_test": Param(5000, 250, "fresh test series"),
    "n_test_windowed": Param(200, 50, "test series also predicted windowed (O(T·window) each)"),
    "hidden": Param(64, 64, "LSTM units"),
    "epochs": Param(100, 40, "epochs (the seed's budget)"),
    "batch_size": Param(400, 100, "the seed's batch size"),
    "window": Param(500, 500, "the seed's stateful chunk length"),
}
SEED_MSE = 0.004058
# minutes each configuration takes at full settings on 2 cores (README: train seconds, plus
# predicting 5000 test series statefully and 200 windowed)
FULL_MINUTES = {
    "stateless-seed": 22,
    "stateful-seed": 17,
    "stateful-recommended": 6,
    "stateful-recommended-std": 6,
}


def make_series(n: int, p: dict, rng: np.random.Generator) -> Sequences:
    t_len, d = p["T"], p["D"]
    t = np.arange(t_len)
    c = rng.integers(5, 100, size=(n, 1))
    u = rng.random((n, 1))
    x = -(t / t_len) * u * np.cos(t / (1.0 + c))
    y = np.zeros_like(x)
    y[:, d:] = x[:, d - 2 : t_len - 2] * x[:, : t_len - d]
    w = np.zeros_like(x)
    w[:, d:] = 1.0
    return Sequences.from_arrays(x[:, :, None], y[:, :, None], w)


def zero_mse(seqs: Sequences) -> float:
    num = sum(float((y[:, 0] ** 2 * w).sum()) for y, w in zip(seqs.ys, seqs.ws))
    return num / sum(float(w.sum()) for w in seqs.ws)


def generate(p: dict, seed: int) -> TaskData:
    data = make_series(p["n_series"], p, np.random.default_rng(seed))
    train, val = data.split(list(range(int(0.8 * p["n_series"]))))
    test = make_series(p["n_test"], p, np.random.default_rng(seed + 10_000))
    return TaskData(
        train,
        val,
        test,
        loss="mse",
        metric="loss",
        baseline={"zero predictor": zero_mse(test)},
        notes=[
            "Test series are fresh (another generator seed), unlike the seed's.",
            "The targets' spread is about 0.08, which keeps raw-data training on the zero predictor's "
            "plateau for many epochs; the 'standardized' configuration scales inputs and targets on the "
            "training steps (as `statefulrnn train` does) and is scored in the original units; its "
            "history is shown in original units too.",
        ],
    )


def configs(p: dict) -> list[Config]:
    lstm = {"cell": "lstm", "hidden_size": p["hidden"]}
    seed_fit = {
        "batch_size": p["batch_size"],
        "epochs": p["epochs"],
        "optimizer": "keras-rmsprop",
        "lr": 1e-3,
    }
    return [
        Config(
            "stateless-seed",
            f"stateless, whole series of {p['T']} (seed)",
            lstm,
            {"mode": "stateless", "window": p["T"], **seed_fit},
            predict_window=p["window"],
            full_only=True,
            full_minutes=FULL_MINUTES["stateless-seed"],
        ),
        Config(
            "stateful-seed",
            f"stateful, chunks of {p['window']}, {p['batch_size']} lanes (seed)",
            lstm,
            {"mode": "stateful", "window": p["window"], **seed_fit},
            predict_window=p["window"],
            full_only=True,
            full_minutes=FULL_MINUTES["stateful-seed"],
        ),
        Config(
            "stateful-recommended",
            "stateful, window 200, 32 lanes, adam 3e-3, clip 1 (statefulrnn)",
            lstm,
            {
                "mode": "stateful",
                "window": 200,
                "batch_size": 32,
                "epochs": p["epochs"],
                "optimizer": "adam",
                "lr": 3e-3,
                "clip": 1.0,
            },
            predict_window=p["window"],
            origin="statefulrnn",
            # on raw data it stays on the plateau (README: 0.00680 after 100 epochs); no quick
            # budget says more, and --quick spends its minute on the standardized run instead
            full_only=True,
            full_minutes=FULL_MINUTES["stateful-recommended"],
        ),
        Config(
            "stateful-recommended-std",
            "stateful, window 200, 32 lanes, adam 3e-3, clip 1, standardized (statefulrnn)",
            lstm,
            {
                "mode": "stateful",
                "window": 200,
                "batch_size": 32,
                "epochs": p["epochs"],
                "optimizer": "adam",
                "lr": 3e-3,
                "clip": 1.0,
                "standardize": True,
            },
            predict_window=p["window"],
            origin="statefulrnn",
        ),
    ]


def claims(p: dict, results: dict) -> list[Claim]:
    c = results["configs"]
    zero = results["baseline"]["zero predictor"]
    out = []
    for name, label in (("stateless-seed", "stateless"), ("stateful-seed", "stateful")):
        claim = (
            f"{label} (seed recipe) leaves the zero predictor's plateau within {p['epochs']} "
            f"epochs and reaches the seed's {SEED_MSE}"
        )
        seed_value = (
            f"{SEED_MSE} (stateless, 100 epochs); Keras 3 here: 0.00718, never left the plateau"
        )
        if skipped(results, name):
            out.append(needs_full_run(claim, seed_value, results, name))
        elif name in c:
            mse = c[name]["test"]["stateful"]["loss"]
            left = mse < 0.9 * zero
            # the seed's own number (0.004058, stateless) is reproduced only within 10%
            if mse <= 1.1 * SEED_MSE:
                verdict = "reproduced"
            else:
                verdict = "left the plateau" if left else "stayed on the plateau"
            out.append(
                Claim(
                    claim,
                    seed_value,
                    f"{mse:.4g} vs zero predictor {zero:.4g} ({mse / SEED_MSE:.2f}x the seed's number)",
                    verdict,
                )
            )
    for name, how in (
        ("stateful-recommended", "raw data"),
        ("stateful-recommended-std", "standardized"),
    ):
        claim = (
            f"statefulrnn's recipe ({how}) beats the seed's {SEED_MSE} within {p['epochs']} epochs"
        )
        if skipped(results, name):
            out.append(needs_full_run(claim, str(SEED_MSE), results, name))
        elif name in c:
            mse = c[name]["test"]["stateful"]["loss"]
            ours = f"{mse:.4g} vs zero predictor {zero:.4g}"
            if mse < SEED_MSE:
                out.append(Claim(claim, str(SEED_MSE), ours, "better than seed"))
            elif results["quick"]:
                # when a run leaves the plateau varies from seed to seed; a small run that has
                # not left it yet says nothing about the full run
                minutes = FULL_MINUTES[name]
                out.append(
                    Claim(
                        claim,
                        str(SEED_MSE),
                        f"{ours} after {p['epochs']} --quick epochs on {results['data']['train']} "
                        f"series: not yet; the full settings (about {minutes} min) decide",
                        NEEDS_FULL_RUN,
                        minutes,
                    )
                )
            else:
                out.append(Claim(claim, str(SEED_MSE), ours, "worse than seed"))
    return out


def answer(p: dict, results: dict) -> str:
    """The page's first sentence: what the recommended recipes reach, against the seed's number."""
    c = results["configs"]
    zero = results["baseline"]["zero predictor"]
    std, raw = c.get("stateful-recommended-std"), c.get("stateful-recommended")
    if std is None:
        return ""
    mse = std["test"]["stateful"]["loss"]
    if mse < 0.9 * zero:
        side = "below" if mse < SEED_MSE else "above"
        text = (
            f"Carrying state across chunks of 200 steps, a standardized LSTM reaches test MSE "
            f"{mse:.2g} in {std['epochs_run']} epochs: {side} the seed's {SEED_MSE}, and "
            f"{zero / mse:.1f}x under the zero predictor's {zero:.2g}"
        )
    else:
        text = (
            f"After {std['epochs_run']} epochs the standardized stateful LSTM is still on the "
            f"zero predictor's plateau (test MSE {mse:.2g} vs {zero:.2g}); when it leaves varies "
            "from seed to seed, and the full settings decide"
        )
    if raw is not None:
        text += (
            f"; on raw data the same recipe stays at {raw['test']['stateful']['loss']:.2g}: the "
            "targets' small scale, not a lack of state, holds training on the plateau"
        )
    return text + "."


TASK = Task(
    "lagged-product",
    "000",
    "Y_t = X_{t-2}·X_{t-D}: remember D=100 steps (Yumi)",
    PARAMS,
    generate,
    configs,
    claims,
    answer=answer,
)
