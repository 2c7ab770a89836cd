"""moving-average (seeds 002/003, the Keras example `lstm_stateful.py`).

Input: uniform noise in [-0.1, 0.1]; target: the mean of the last `tsteps` inputs. A model
that sees only `lahead` inputs at a time (its window) cannot know the older ones unless it
carries state. Seed claim: with lahead < tsteps only the stateful model converges; with
lahead >= tsteps both do. Seed: one series of input_len 1000 (800 train / 200 test),
LSTM(20) + Dense(1), adam, MSE, batch_size 1, 10 epochs, no shuffle. statefulrnn adds, for
the window of lahead: stateless windows with a burn-in before each, and stateful training whose
gradient reaches `backprop` > lahead steps back (TBPTT(lahead, backprop)).

Keras fed each rolling window newest-first (x_t, x_{t-1}, ...); here windows are in time
order, which changes nothing a recurrent model can learn.
"""

from __future__ import annotations

import numpy as np

from statefulrnn.data.sequences import Sequences
from statefulrnn.tasks.base import Claim, Config, Param, Task, TaskData, verdict

PARAMS = {
    "input_len": Param(1000, 1000, "length of the series (80% train, 20% test)"),
    "tsteps": Param(2, 2, "the target is the mean of the last tsteps inputs"),
    "lahead": Param(1, 1, "the window a stateless model sees (the seed's lahead)"),
    "hidden": Param(20, 20, "LSTM units"),
    "epochs": Param(10, 6, "epochs of the seed's recipes"),
    "epochs_recommended": Param(150, 60, "epochs of statefulrnn's recipe"),
    "burn_in": Param(10, 10, "burn-in steps before each stateless window of lahead"),
    "backprop": Param(4, 4, "k2 of the stateful run that updates every lahead steps"),
    "epochs_lahead": Param(40, 6, "epochs of the burn-in and backprop recipes"),
    "amp": Param(0.1, 0.1, "inputs are uniform in [-amp, amp]"),
}
CONVERGED = 0.1  # "converged": test MSE below 10% of the best any window of lahead < tsteps can do


def series(p: dict, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) of input_len steps: y_t = mean(x_{t-tsteps+1} .. x_t)."""
    drop = p["tsteps"] - 1
    x = rng.uniform(-p["amp"], p["amp"], size=p["input_len"] + drop)
    y = np.convolve(x, np.full(p["tsteps"], 1.0 / p["tsteps"]), mode="valid")
    return x[drop:], y


def floor_mse(p: dict, seen: int) -> float:
    """Least MSE of any predictor that sees only the last `seen` inputs (the rest is unseen noise)."""
    var = (2 * p["amp"]) ** 2 / 12
    return max(p["tsteps"] - seen, 0) * var / p["tsteps"] ** 2


def generate(p: dict, seed: int) -> TaskData:
    x, y = series(p, np.random.default_rng(seed))
    n_train = int(0.8 * len(x))
    train_x, train_y = x[:n_train], y[:n_train]
    train = Sequences.from_arrays([train_x[:, None]], [train_y[:, None]])
    # the first tsteps-1 test steps need inputs from before the split: not scored, as in the seed
    w = np.ones(len(x) - n_train)
    w[: p["tsteps"] - 1] = 0
    test = Sequences.from_arrays([x[n_train:, None]], [y[n_train:, None]], [w])
    vx, vy = series(p, np.random.default_rng(seed + 10_000))
    val = Sequences.from_arrays([vx[-len(w) :, None]], [vy[-len(w) :, None]], [w])
    return TaskData(
        train,
        val,
        test,
        loss="mse",
        metric="loss",
        baseline={
            "zero predictor": floor_mse(p, 0),
            f"best with a window of {p['lahead']}": floor_mse(p, p["lahead"]),
        },
        notes=[
            f"'Converged' means a test MSE below {CONVERGED:.0%} of the best MSE possible with a window "
            f"of {p['tsteps'] - 1} ({floor_mse(p, p['tsteps'] - 1):.3g})."
        ],
        excerpt=(0, 60),
    )


def configs(p: dict) -> list[Config]:
    lstm = {"cell": "lstm", "hidden_size": p["hidden"]}
    seed_fit = {
        "batch_size": 1,
        "epochs": p["epochs"],
        "optimizer": "adam",
        "lr": 1e-3,
        "shuffle": False,
    }
    la, ts = p["lahead"], p["tsteps"]
    out = [
        Config(
            "stateless-seed",
            f"stateless, lahead {la} (seed)",
            lstm,
            {"mode": "stateless", "window": la, "stride": 1, "target": "last", **seed_fit},
            predict_window=la,
        ),
        Config(
            "stateful-seed",
            f"stateful, lahead {la} (seed)",
            lstm,
            {"mode": "stateful", "window": la, **seed_fit},
            predict_window=la,
        ),
    ]
    if la < ts:
        out += [
            Config(
                "stateless-long",
                f"stateless, lahead {ts} = tsteps (seed)",
                lstm,
                {"mode": "stateless", "window": ts, "stride": 1, "target": "last", **seed_fit},
                predict_window=ts,
            ),
            Config(
                "stateful-long",
                f"stateful, lahead {ts} = tsteps (seed)",
                lstm,
                {"mode": "stateful", "window": ts, **seed_fit},
                predict_window=ts,
            ),
        ]
    ours = {"optimizer": "adam", "lr": 3e-3, "clip": 1.0, "epochs": p["epochs_lahead"]}
    b, k2 = p["burn_in"], max(p["backprop"], la)
    out += [
        Config(
            "burn-in",
            f"stateless, lahead {la} + burn-in {b} (statefulrnn)",
            lstm,
            {"mode": "stateless", "window": la, "stride": 1, "target": "last", "batch_size": 16}
            | ours
            | {"burn_in": b},
            predict_window=la,
            predict_burn_in=b,
            origin="statefulrnn",
        ),
        Config(
            "stateful-backprop",
            f"stateful, lahead {la}, backprop {k2}, 8 lanes (statefulrnn)",
            lstm,
            {"mode": "stateful", "window": la, "backprop": k2, "batch_size": 8, "cut": 8} | ours,
            predict_window=la,
            origin="statefulrnn",
        ),
    ]
    out.append(
        Config(
            "stateful-recommended",
            "stateful, 8 lanes, window 10 (statefulrnn)",
            lstm,
            {
                "mode": "stateful",
                "window": 10,
                "batch_size": 8,
                "epochs": p["epochs_recommended"],
                "optimizer": "adam",
                "lr": 3e-3,
                "clip": 1.0,
                "cut": 8,
            },
            predict_window=la,
            origin="statefulrnn",
        )
    )
    return out


def claims(p: dict, results: dict) -> list[Claim]:
    c = results["configs"]
    la, ts = p["lahead"], p["tsteps"]
    limit = CONVERGED * floor_mse(p, ts - 1)
    mse = {
        k: v["test"]["windowed" if k.startswith("stateless") else "stateful"]["loss"]
        for k, v in c.items()
    }
    out = []
    if la < ts and {"stateful-seed", "stateless-seed"} <= set(mse):
        ok = mse["stateful-seed"] < limit <= mse["stateless-seed"]
        out.append(
            Claim(
                f"lahead {la} < tsteps {ts}: only the stateful model converges",
                "stateful 1.79e-5 vs stateless 9.60e-4 (Keras 3 here)",
                f"stateful {mse['stateful-seed']:.3g} vs stateless {mse['stateless-seed']:.3g} "
                f"(converged: < {limit:.2g})",
                verdict(ok),
            )
        )
    if {"stateful-long", "stateless-long"} <= set(mse):
        ok = max(mse["stateful-long"], mse["stateless-long"]) < limit
        out.append(
            Claim(
                f"lahead {ts} >= tsteps {ts}: both converge",
                "both converge",
                f"stateful {mse['stateful-long']:.3g}, stateless {mse['stateless-long']:.3g}",
                verdict(ok),
            )
        )
    if la >= ts and {"stateful-seed", "stateless-seed"} <= set(mse):
        ok = max(mse["stateful-seed"], mse["stateless-seed"]) < limit
        out.append(
            Claim(
                f"lahead {la} >= tsteps {ts}: both converge",
                "both converge",
                f"stateful {mse['stateful-seed']:.3g}, stateless {mse['stateless-seed']:.3g}",
                verdict(ok),
            )
        )
    for name, how in (
        ("burn-in", f"stateless lahead {la} + burn-in {p['burn_in']}"),
        ("stateful-backprop", f"stateful lahead {la} with backprop {max(p['backprop'], la)}"),
    ):
        if name in c:
            t = c[name]["test"]
            st, win = t["stateful"]["loss"], t["windowed"]["loss"]
            win_name = "windowed + burn-in" if name == "burn-in" else "windowed"
            out.append(
                Claim(
                    f"{how} converges (statefulrnn)",
                    "-",
                    f"stateful {st:.3g}, {win_name} {win:.3g} in "
                    f"{c[name]['train_seconds']:.1f} s (converged: < {limit:.2g})",
                    verdict(st < limit),
                )
            )
    if "stateful-recommended" in mse:
        r = c["stateful-recommended"]
        out.append(
            Claim(
                "batched stateful training converges (statefulrnn)",
                "-",
                f"{mse['stateful-recommended']:.3g} in {r['train_seconds']:.1f} s",
                verdict(mse["stateful-recommended"] < limit),
            )
        )
    return out


def answer(p: dict, results: dict) -> str:
    """Does carrying state help with a window shorter than the average: the first sentence."""
    c = results["configs"]
    la, ts = p["lahead"], p["tsteps"]
    if la >= ts or not {"stateful-seed", "stateless-seed"} <= set(c):
        return ""
    st = c["stateful-seed"]["test"]["stateful"]["loss"]
    win = c["stateless-seed"]["test"]["windowed"]["loss"]
    head = f"With a window of {la} step(s) and an average over {ts}, "
    floor = f"the best any {la}-step window can do is {floor_mse(p, la):.2g}"
    if st >= win:
        return (
            head + f"carrying state did not help in this run: test MSE {st:.2g} with state, "
            f"{win:.2g} without ({floor})."
        )
    text = (
        head + f"carrying state: test MSE {st:.2g}, {win / st:.0f}x lower than stateless "
        f"({win:.2g}; {floor}) - only the stateful model sees the older input."
    )
    limit = CONVERGED * floor_mse(p, ts - 1)
    if st >= limit:
        text += (
            f" It stays above the 'converged' bar ({limit:.2g}) in this run, so the claim that"
            " only the stateful model converges is not confirmed below."
        )
    return text


TASK = Task(
    "moving-average",
    "002/003",
    "predict the mean of the last tsteps noise inputs (Keras example)",
    PARAMS,
    generate,
    configs,
    claims,
    answer=answer,
)
