"""first-bit (seed 001, Philippe Remy): remember the first value of a 20-step series.

X is N × T zeros with X[i, 0] = 1 for a random half of the rows; the target at every step is
X[i, 0], so from step `window` on a model must remember something its window no longer shows.
Seed: LSTM(10) + Dense(1, sigmoid), adam, binary cross-entropy, 1000 train / 200 val series.
statefulrnn adds: batched stateful training (window 5, 25 lanes), the same with `backprop` over
the whole series (TBPTT(5, length)), and the seed's stateless windows with a burn-in before each.
"""

from __future__ import annotations

import numpy as np

from statefulrnn.data.sequences import Sequences
from statefulrnn.tasks.base import Claim, Config, Param, Task, TaskData, verdict

PARAMS = {
    "n_series": Param(1200, 400, "number of series (the last `n_val` are validation)"),
    "n_val": Param(200, 100, "validation series"),
    "n_test": Param(1000, 300, "fresh test series"),
    "length": Param(20, 20, "steps per series"),
    "window": Param(10, 10, "the seed's stateless window"),
    "hidden": Param(10, 10, "LSTM units"),
    "epochs_stateless": Param(15, 3, "epochs of the seed's stateless windows"),
    "epochs_per_step": Param(2, 1, "epochs of the seed's one-step-per-update stateful recipe"),
    "epochs_recommended": Param(40, 25, "epochs of statefulrnn's batched stateful recipe"),
    "epochs_burn_in": Param(15, 5, "epochs of stateless windows + burn-in"),
    "burn_in": Param(20, 20, "burn-in steps before each stateless window"),
}


def make_series(n: int, length: int, rng: np.random.Generator) -> Sequences:
    """n series of `length` zeros whose first value is 1 for a random half; target = first value."""
    x = np.zeros((n, length, 1))
    ones = rng.permutation(n)[: n // 2]
    x[ones, 0, 0] = 1.0
    y = np.repeat(x[:, :1, :], length, axis=1)
    return Sequences.from_arrays(x, y)


def beyond(seqs: Sequences, window: int) -> Sequences:
    """The same series scored only at steps t >= window: where a window no longer sees step 0."""
    ws = [np.where(np.arange(len(w)) >= window, w, 0.0) for w in seqs.ws]
    return Sequences(seqs.xs, seqs.ys, ws)


def generate(p: dict, seed: int) -> TaskData:
    rng = np.random.default_rng(seed)
    data = make_series(p["n_series"], p["length"], rng)
    train, val = data.split(list(range(p["n_series"] - p["n_val"])))
    test = make_series(p["n_test"], p["length"], np.random.default_rng(seed + 10_000))
    return TaskData(
        train,
        val,
        test,
        loss="bce",
        metric="accuracy",
        baseline={"chance accuracy": 0.5},
        focus={f"steps t >= {p['window']}": beyond(test, p["window"])},
        excerpt=(0, p["length"]),
        notes=[
            "Every step is scored (target = the first value); 'steps t >= window' scores only the "
            "steps whose window no longer contains step 0, where the seed's stateless model fails."
        ],
    )


def configs(p: dict) -> list[Config]:
    lstm = {"cell": "lstm", "hidden_size": p["hidden"]}
    w, b, t_len = p["window"], p["burn_in"], p["length"]
    stateless = {
        "mode": "stateless",
        "window": w,
        "stride": 1,
        "target": "last",
        "batch_size": 64,
        "optimizer": "adam",
        "lr": 1e-3,
        "loss": "bce",
    }
    recommended = {
        "mode": "stateful",
        "window": 5,
        "batch_size": 25,
        "epochs": p["epochs_recommended"],
        "optimizer": "adam",
        "lr": 1e-2,
        "clip": 1.0,
        "loss": "bce",
    }
    return [
        Config(
            "stateless-seed",
            f"stateless, windows of {w} (seed)",
            lstm,
            {**stateless, "epochs": p["epochs_stateless"]},
            predict_window=w,
        ),
        Config(
            "stateful-seed",
            "stateful, 1 step per update, batch 1 (seed)",
            lstm,
            {
                "mode": "stateful",
                "window": 1,
                "batch_size": 1,
                "epochs": p["epochs_per_step"],
                "optimizer": "adam",
                "lr": 1e-3,
                "loss": "bce",
            },
            predict_window=w,
        ),
        Config(
            "stateful-recommended",
            "stateful, window 5, 25 lanes (statefulrnn)",
            lstm,
            recommended,
            predict_window=w,
            origin="statefulrnn",
        ),
        Config(
            "burn-in",
            f"stateless, windows of {w} + burn-in {b} (statefulrnn)",
            lstm,
            {**stateless, "epochs": p["epochs_burn_in"], "burn_in": b, "lr": 1e-2, "clip": 1.0},
            predict_window=w,
            predict_burn_in=b,
            origin="statefulrnn",
        ),
        Config(
            "stateful-backprop",
            f"stateful, window 5, backprop {t_len}, 25 lanes (statefulrnn)",
            lstm,
            {**recommended, "backprop": t_len},
            predict_window=w,
            origin="statefulrnn",
        ),
    ]


def claims(p: dict, results: dict) -> list[Claim]:
    c = results["configs"]
    focus = f"steps t >= {p['window']}"
    out = []
    if "stateful-seed" in c:
        acc = c["stateful-seed"]["test"]["stateful"]["accuracy"]
        out.append(
            Claim(
                "stateful (1,1,1) training reaches val accuracy 1.0",
                "1.0 after 1 epoch",
                f"{acc:.3f} test accuracy after {p['epochs_per_step']} epoch(s), "
                f"{c['stateful-seed']['train_seconds']:.1f} s",
                verdict(acc >= 0.99),
            )
        )
    if "stateless-seed" in c:
        acc = c["stateless-seed"]["test"]["windowed"][f"accuracy [{focus}]"]
        out.append(
            Claim(
                f"stateless windows of {p['window']} stay near chance",
                "~0.5 (0.518 in Keras 3)",
                f"{acc:.3f} on {focus} (windowed prediction)",
                verdict(acc < 0.6),
            )
        )
    if "stateful-recommended" in c:
        r = c["stateful-recommended"]
        acc = r["test"]["stateful"]["accuracy"]
        out.append(
            Claim(
                "batched stateful training reaches >= 0.99 fast (statefulrnn)",
                "seed recipe: ~80 s per epoch in Keras 3 here",
                f"{acc:.3f} in {r['train_seconds']:.1f} s",
                verdict(acc >= 0.99),
            )
        )
    if "burn-in" in c:
        r = c["burn-in"]
        win = r["test"]["windowed"][f"accuracy [{focus}]"]
        st = r["test"]["stateful"][f"accuracy [{focus}]"]
        out.append(
            Claim(
                f"stateless windows of {p['window']} + burn-in {p['burn_in']} remember the bit "
                "beyond the window (statefulrnn)",
                "-",
                f"{win:.3f} windowed + burn-in, {st:.3f} stateful on {focus}, "
                f"in {r['train_seconds']:.1f} s",
                verdict(min(win, st) >= 0.99),
            )
        )
    if "stateful-backprop" in c:
        r = c["stateful-backprop"]
        acc = r["test"]["stateful"]["accuracy"]
        out.append(
            Claim(
                f"stateful, window 5 with backprop {p['length']} (the whole series) reaches >= 0.99 "
                "(statefulrnn)",
                "-",
                f"{acc:.3f} in {r['train_seconds']:.1f} s",
                verdict(acc >= 0.99),
            )
        )
    return out


def answer(p: dict, results: dict) -> str:
    """Carrying state vs a window, beyond the window: the page's first sentence."""
    c = results["configs"]
    focus = f"accuracy [steps t >= {p['window']}]"
    stateful = next(
        (c[n] for n in ("stateful-recommended", "stateful-backprop", "stateful-seed") if n in c),
        None,
    )
    window = c.get("stateless-seed")
    if stateful is None or window is None:
        return ""
    st = stateful["test"]["stateful"][focus]
    win = window["test"]["windowed"][focus]
    steps = f"steps {p['window']}..{p['length'] - 1}"
    if st >= 0.99 and win < 0.6:
        why = "the bit is beyond the window, and only the carried state still holds it"
    else:
        why = "this run does not separate the two"
    return (
        f"Carrying state: {st:.2f} accuracy at {steps}; a {p['window']}-step window: {win:.2f} "
        f"(chance: 0.50) - {why}."
    )


TASK = Task(
    "first-bit",
    "001",
    "remember the first bit of a 20-step series (Remy)",
    PARAMS,
    generate,
    configs,
    claims,
    answer=answer,
)
