"""One trial of a sweep: train one configuration, scoring it after every epoch the way it will
be deployed, and stop early when the pruner says it is hopeless.

The objective is the validation loss in the prediction mode the user will deploy: "stateful"
(one pass carrying state) or "windowed" (a fresh pass over the `window` steps before each
step). A stateful model cannot be judged by its windowed loss, nor the other way round.

Knows a trial only through `report`, `should_prune` and `set_user_attr`; the budget, storage
and workers are `sweep.py`'s business.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from statefulrnn.data.sequences import Sequences
from statefulrnn.experiments.targets import Target
from statefulrnn.model.rnn import StatefulRNN
from statefulrnn.modes import STATELESS_BURN_IN, training_mode
from statefulrnn.predict import evaluate
from statefulrnn.train import Callback, EarlyStopping, fit


class Hopeless(Exception):
    """The pruner stopped the trial (or it diverged); carries the epochs it ran."""

    def __init__(self, message: str, epochs: int):
        super().__init__(message)
        self.epochs = epochs


def lanes(train: Sequences, mode: str, batch_size: int, window: int) -> tuple[Sequences, int]:
    """The training sequences and lanes `statefulrnn train` would use (`tabular.train`'s rule).

    Stateful, with fewer sequences than lanes: each is cut into contiguous pieces of at least
    4 windows, so the lanes have work and truncated BPTT still carries state across chunks.
    """
    if mode != "stateful" or len(train) >= batch_size:
        return train, batch_size
    want = -(-batch_size // len(train))
    parts = max(1, min(want, int(train.lengths.min()) // (4 * window)))
    if parts > 1:
        train = train.cut(parts)
    return train, min(batch_size, len(train))


def _burn_in(cfg: dict[str, Any]) -> int | None:
    return cfg.get("burn_in") if cfg["mode"] == STATELESS_BURN_IN else None


class _Report(Callback):
    """After every epoch: the deploy-mode validation scores into the record, and to the trial."""

    def __init__(self, trial, target: Target, cfg: dict[str, Any], predict: str):
        self.trial, self.target, self.cfg, self.predict = trial, target, cfg, predict

    def scores(self, record: dict[str, Any], model) -> dict[str, float]:
        suffix = "" if self.predict == "stateful" else "_windowed"
        names = ["loss", *self.target.metrics]
        if all(f"val_{m}{suffix}" in record for m in names):  # fit scored this mode already
            return {m: record[f"val_{m}{suffix}"] for m in names}
        return evaluate(
            model,
            self.target.val,
            loss=self.target.loss,
            mode="windowed",
            window=self.cfg["window"],
            burn_in=_burn_in(self.cfg),
            metrics=self.target.metrics,
        )

    def on_epoch_end(self, epoch: int, record: dict[str, Any], model) -> bool:
        s = self.scores(record, model)
        record["objective"] = s["loss"]
        for m in self.target.metrics:
            record[f"objective_{m}"] = s[m]
        if not math.isfinite(s["loss"]):
            raise Hopeless(f"validation loss {s['loss']} at epoch {epoch + 1}", epoch + 1)
        self.trial.report(s["loss"], epoch)
        if self.trial.should_prune():
            raise Hopeless(f"pruned after epoch {epoch + 1}", epoch + 1)
        return False


def run_trial(
    trial, target: Target, cfg: dict[str, Any], *, predict: str, seed: int
) -> dict[str, Any]:
    """Train `cfg`; return {"value", "epochs_run", "best_epoch", "val", "test"}.

    Raises `Hopeless` when pruned, diverged, or scored NaN.
    """
    from statefulrnn.train import TrainingDiverged

    mode = training_mode(cfg["mode"])  # "stateless+burn-in" trains stateless
    train, batch_size = lanes(target.train, mode, cfg["batch_size"], cfg["window"])
    torch.manual_seed(seed)
    model = StatefulRNN(
        target.train.num_features,
        cfg["hidden"],
        target.outputs or target.train.num_outputs,
        cell=cfg["cell"],
        num_layers=cfg["layers"],
    )
    report = _Report(trial, target, cfg, predict)
    callbacks: list[Callback] = [report]
    if cfg["patience"] > 0:  # as `statefulrnn train`: stop, and keep the best epoch's weights
        callbacks.append(EarlyStopping("objective", patience=cfg["patience"], restore_best=True))
    try:
        history = fit(
            model,
            train,
            target.val,
            mode=mode,
            window=cfg["window"],
            batch_size=batch_size,
            epochs=cfg["epochs"],
            loss=target.loss,
            lr=cfg["lr"],
            clip=cfg["clip"],
            burn_in=_burn_in(cfg),
            seed=seed,
            callbacks=callbacks,
            verbose=0,
            **_fixed(target, mode, cfg, predict),
        )
    except TrainingDiverged as err:
        raise Hopeless(f"diverged: {str(err).split(';')[0]}", 0) from None
    kept = history.best("objective") if cfg["patience"] > 0 else history.last
    if not kept:  # no epoch with a finite objective to keep
        raise Hopeless("no epoch ended with a finite validation objective", len(history))
    out: dict[str, Any] = {
        "value": kept["objective"],
        "epochs_run": len(history),
        "lanes": batch_size,  # the batch size `statefulrnn train` would end up with, too
        "best_epoch": kept["epoch"],
        "val": {"loss": kept["objective"]} | {m: kept[f"objective_{m}"] for m in target.metrics},
    }
    if target.test is not None:
        out["test"] = evaluate(
            model,
            target.test,
            loss=target.loss,
            mode=predict,
            window=cfg["window"] if predict == "windowed" else None,
            burn_in=_burn_in(cfg) if predict == "windowed" else None,
            metrics=target.metrics,
        )
    return out


def _fixed(target: Target, mode: str, cfg: dict[str, Any], predict: str) -> dict[str, Any]:
    """The options a table sweep keeps fixed (targets.FIXED_OPTIONS). A stateful model scored
    windowed gets a val_window, so fit scores that loss as `train` does with best.toml's
    (sweep_files._selection): both compute the number the same way."""
    out = dict(target.fixed)
    if predict == "windowed" and mode == "stateful" and out.get("val_window") is None:
        out["val_window"] = cfg["window"]
    return out
