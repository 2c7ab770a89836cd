"""sweep: search window, state mode, size and learning rate with Optuna, N trials exactly.

A study lives in a database (SQLite `sweeps.db` in the run folder by default, or any
SQLAlchemy URL), so a sweep survives a crash and several workers, on one machine or many,
share it: each runs `sweep(...)` with the same arguments. Optuna samples (TPE) and prunes
(median rule, after every epoch); this module adds the one thing Optuna leaves open, a budget
of exactly N trials across all workers.

Why not `MaxTrialsCallback` alone: it stops a worker *after* a trial ends once N trials are
counted, so two workers that both start trial N-1 end with N+1. Instead every trial, once
created (the storage numbers trials in creation order, under a lock), checks the trials
numbered before it:

    counted = COMPLETE or PRUNED      (ran to an end, possibly an early one on purpose)
    claimed = counted, RUNNING or WAITING
    trial k runs  iff  fewer than N trials numbered below k are claimed

Claimed trials below k stay claimed unless they FAIL, so at most N trials are ever counted.
A trial that finds the budget spent is marked FAIL at once with the note "not run" and
counts for nothing. A worker stops when N are counted; while the rest are claimed by other
workers it waits, failing trials whose worker died: on this host, a dead process id; on any
host, a heartbeat older than the grace period (Optuna's `fail_stale_trials`). A failed
trial does not count, so the next trial replaces it; rerunning a killed worker's command
resumes the study and reaches N.
"""

from __future__ import annotations

import json
import os
import socket
import time
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from statefulrnn.experiments import space as spaces
from statefulrnn.experiments.targets import Target, resolve
from statefulrnn.experiments.trial import Hopeless, run_trial
from statefulrnn.modes import PREDICT_MODES
from statefulrnn.records import UsageError

HEARTBEAT_S = 10  # a running trial writes its heartbeat this often
GRACE_S = 60  # ... and is failed by another worker when its heartbeat is this old
POLL_S = 1.0  # how often a waiting worker looks at the study
STUDY_KEY = "statefulrnn.sweep"  # the study's user attribute naming what it sweeps


def _optuna():
    try:
        import optuna
    except ImportError:
        raise ImportError(
            "sweeps need Optuna: pip install optuna."
        ) from None
    return optuna


class _NotRun(Exception):
    """The budget was spent by the time this trial was created; it is marked FAIL, not run."""


@dataclass
class SweepResult:
    study: str  # study name
    storage: str  # database URL, password hidden
    out: Path  # run folder: trials.csv, best.toml, sweep.json, report.html
    requested: int  # N
    counts: dict[str, int]  # trials per state, over all workers
    best: dict[str, Any] | None  # the best complete trial's row (see sweep_files.rows)
    trials: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0  # this worker's wall time
    files: dict[str, Path] = field(default_factory=dict)


def _worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


SQLITE_BUSY_S = 20  # how long a locked SQLite study is waited for before a clear error


def open_study(url: str, name: str, *, sampler=None, pruner=None):
    """Create or load the study; retried, since workers starting together race to make tables."""
    optuna = _optuna()
    import sqlalchemy.exc

    kwargs = {"connect_args": {"timeout": SQLITE_BUSY_S}} if url.startswith("sqlite") else {}
    for attempt in range(6):
        try:
            with warnings.catch_warnings():  # heartbeat_interval is "experimental" in Optuna
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                storage = optuna.storages.RDBStorage(
                    url, engine_kwargs=kwargs, heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S
                )
            study = optuna.create_study(
                storage=storage,
                study_name=name,
                sampler=sampler,
                pruner=pruner,
                direction="minimize",
                load_if_exists=True,
            )
            return study
        except (sqlalchemy.exc.OperationalError, sqlalchemy.exc.IntegrityError) as err:
            if "locked" in str(err):  # the busy timeout has already waited
                raise OSError(
                    f"the study database {_hide_password(url)} stayed locked for "
                    f"{SQLITE_BUSY_S} s: another process holds it (a sweep worker stuck, or a "
                    "program with it open). Close that process, or use another --out/--storage."
                ) from None
            if attempt == 5:
                raise
            time.sleep(0.2 + 0.3 * attempt)
        except (sqlalchemy.exc.ArgumentError, sqlalchemy.exc.NoSuchModuleError, ValueError) as err:
            raise UsageError(
                f"--storage {_hide_password(url)}: not a database URL this sweep can open "
                f"({' '.join(str(err).split())}); e.g. sqlite:///sweeps.db or "
                "postgresql://user@host/db."
            ) from None
    raise AssertionError("unreachable")  # pragma: no cover


def _check_same_sweep(study, about: dict[str, Any], where: str) -> None:
    have = study.user_attrs.get(STUDY_KEY)
    if have is None:
        study.set_user_attr(STUDY_KEY, about)
        return
    differ = _first_difference(have, about)
    if differ is not None:
        key, was, now = differ
        raise ValueError(
            f"study {study.study_name!r} in {where} sweeps something else: its {key} is "
            f"{was!r}, this command's is {now!r}. Rerun the same "
            "command to resume it, or start a new one with --study NAME or another --out."
        )


def _first_difference(have: dict, about: dict, path: str = "") -> tuple[str, Any, Any] | None:
    """The first key (as `target's loss` for nested ones) whose value differs, or None."""
    for key in sorted(set(have) | set(about)):
        was, now = have.get(key), about.get(key)
        if isinstance(was, dict) and isinstance(now, dict):
            inner = _first_difference(was, now, f"{path}{key}'s ")
            if inner is not None:
                return inner
        elif was != now:
            return f"{path}{key}", was, now
    return None


class Budget:
    """Exactly N counted trials across workers (the rule in the module docstring)."""

    def __init__(self, study, n: int, log: Callable[[str], None]):
        self.study, self.n, self.log = study, n, log
        optuna = _optuna()
        s = optuna.trial.TrialState
        self.FAIL = s.FAIL
        self.counted = (s.COMPLETE, s.PRUNED)
        self.claimed = (s.COMPLETE, s.PRUNED, s.RUNNING, s.WAITING)
        self.host = socket.gethostname()

    def states(self) -> Counter:
        return Counter(t.state.name for t in self.study.get_trials(deepcopy=False))

    def done(self) -> int:
        return len(self.study.get_trials(deepcopy=False, states=self.counted))

    def claimed_count(self) -> int:
        return len(self.study.get_trials(deepcopy=False, states=self.claimed))

    def allows(self, number: int) -> bool:
        ahead = [
            t
            for t in self.study.get_trials(deepcopy=False, states=self.claimed)
            if t.number < number
        ]
        return len(ahead) < self.n

    def reap(self) -> None:
        """Fail the RUNNING trials of dead workers, so they stop holding a place in the budget."""
        optuna = _optuna()
        with warnings.catch_warnings():  # fail_stale_trials is "experimental" in Optuna
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(self.study)  # any host: heartbeat too old
        running = self.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
        for t in running:
            host, _, pid = str(t.user_attrs.get("worker", "")).rpartition(":")
            if host != self.host or not pid.isdigit() or int(pid) == os.getpid():
                continue
            if not _alive(int(pid)):  # this host: no need to wait out the grace period
                self.study.tell(t.number, state=self.FAIL, skip_if_finished=True)
                self.log(f"trial {t.number}: its worker (process {pid}) is gone; marked FAIL")


def _line(cfg: dict[str, Any]) -> str:
    mode = cfg["mode"] + (f" {cfg['burn_in']}" if cfg.get("burn_in") else "")
    return (
        f"{mode}, window {cfg['window']}, batch {cfg['batch_size']}, {cfg['cell']} "
        f"{cfg['hidden']}x{cfg['layers']}, lr {cfg['lr']:.2g}"
    )


def _objective(target: Target, space, budget: Budget, predict: str, seed: int, log):
    optuna = _optuna()

    def objective(trial) -> float:
        trial.set_user_attr("worker", _worker_id())  # lets a worker on this host spot a dead one
        if not budget.allows(trial.number):
            trial.set_user_attr("note", f"not run: {budget.n} trials were already claimed")
            raise _NotRun()
        cfg = spaces.suggest(trial, space)
        trial.set_user_attr("config", cfg)
        t0 = time.perf_counter()
        try:
            r = run_trial(trial, target, cfg, predict=predict, seed=seed)
        except Hopeless as h:
            trial.set_user_attr("seconds", time.perf_counter() - t0)
            trial.set_user_attr("epochs_run", h.epochs)
            trial.set_user_attr("note", str(h))
            log(f"trial {trial.number:>3}  PRUNED    {str(h):<30}  {_line(cfg)}")
            raise optuna.TrialPruned(str(h)) from None
        seconds = time.perf_counter() - t0
        for key in ("epochs_run", "best_epoch", "lanes", "val", "test"):
            if key in r:
                trial.set_user_attr(key, r[key])
        trial.set_user_attr("seconds", seconds)
        score = f"val loss {r['value']:.4g}" + "".join(
            f", {m} {v:.3g}" for m, v in r["val"].items() if m != "loss"
        )
        log(f"trial {trial.number:>3}  COMPLETE  {score:<30}  {_line(cfg)}  ({seconds:.1f} s)")
        return r["value"]

    return objective


def work(study, objective, budget: Budget, *, timeout: float | None, log) -> None:
    """Run trials until N are counted (waiting for other workers' last ones) or time is up."""
    t0 = time.monotonic()
    waiting = False
    while True:
        budget.reap()
        done = budget.done()
        if done >= budget.n:
            return
        if timeout is not None and time.monotonic() - t0 >= timeout:
            log(f"timeout: {timeout:g} s passed; {done} of {budget.n} trials done")
            return
        if budget.claimed_count() >= budget.n:
            if not waiting:
                log(f"waiting for {budget.n - done} trial(s) running in other workers")
            waiting = True
            time.sleep(POLL_S)
            continue
        waiting = False
        study.optimize(objective, n_trials=1, catch=(_NotRun,), gc_after_trial=False)


def sweep(
    task_or_data: Any,
    *,
    trials: int,
    timeout: float | None = None,
    storage: str | None = None,
    study: str | None = None,
    space: dict[str, Any] | str | Path | None = None,
    predict: str = "stateful",
    seed: int = 0,
    out: str | Path | None = None,
    quick: bool = False,
    params: dict[str, Any] | None = None,
    table: dict[str, Any] | None = None,
    loss: str = "mse",
    log: Callable[[str], None] = print,
) -> SweepResult:
    """Search the training configuration of `task_or_data` with Optuna; N trials in all.

    `task_or_data`: a built-in task's name (with `params` overrides, `quick`), a CSV/Parquet
    file (`table`: `statefulrnn train`'s options that read it: features, targets, id, time,
    horizon, val, ...), a `(train, val)` pair of Sequences (with `loss`), or a TaskData.
    `space`: changes to the default search space, as a dict or a TOML file (see `space.py`).
    The objective is the validation loss under `predict` ("stateful" or "windowed").

    The study lives in `storage` (default: SQLite `out/sweeps.db`); rerunning the same call
    resumes it, and any number of workers may run it at once: `trials` counts COMPLETE and
    PRUNED trials over all of them. Writes trials.csv, best.toml (for `statefulrnn train
    --config`), sweep.json and report.html to `out`.
    """
    optuna = _optuna()
    from statefulrnn.experiments import sweep_files

    if not isinstance(trials, int) or trials < 1:
        raise ValueError(f"trials must be an integer >= 1; received {trials!r}.")
    if predict not in PREDICT_MODES:
        raise ValueError(f"predict must be one of {PREDICT_MODES}; received {predict!r}.")
    t0 = time.perf_counter()
    target = resolve(task_or_data, quick=quick, params=params, table=table, loss=loss, seed=seed)
    base = spaces.default_space(
        target.max_length,
        task=target.name if target.kind == "task" else None,
        quick=quick,
        epochs=target.epochs,
        patience=target.patience,
    )
    base["clip"] = {"fixed": target.clip}
    sp = spaces.override(base, space)
    out = Path(out) if out is not None else Path("runs") / f"sweep-{target.name}"
    out.mkdir(parents=True, exist_ok=True)
    url = storage or f"sqlite:///{(out / 'sweeps.db').resolve()}"
    name = study or target.name

    epochs_dim = sp["epochs"]
    epochs = int(epochs_dim["fixed"] if "fixed" in epochs_dim else epochs_dim.get("low", 1))
    with warnings.catch_warnings():  # `group` is "experimental" in Optuna
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        sampler = optuna.samplers.TPESampler(
            n_startup_trials=max(4, min(10, trials // 4)),
            multivariate=True,
            group=True,  # burn_in exists only in stateless+burn-in trials
            constant_liar=True,  # workers avoid the points others are running
            # workers differ, or two starting together would propose the same first points
            seed=int(np.random.SeedSequence([seed, os.getpid()]).generate_state(1)[0]),
        )
    pruner = optuna.pruners.MedianPruner(
        n_startup_trials=max(3, min(5, trials // 5)), n_warmup_steps=max(1, epochs // 4)
    )
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # our own line per trial instead
    try:
        st = open_study(url, name, sampler=sampler, pruner=pruner)
        shown = _hide_password(url)
        about = json.loads(
            json.dumps({"target": target.about, "space": sp, "predict": predict, "seed": seed})
        )
        _check_same_sweep(st, about, shown)
        budget = Budget(st, trials, log)
        budget.reap()
        _log_start(log, st, budget, target, sp, predict, shown)
        objective = _objective(target, sp, budget, predict, seed, log)
        work(st, objective, budget, timeout=timeout, log=log)
    finally:
        optuna.logging.set_verbosity(verbosity)

    rows = sweep_files.rows(st)
    result = SweepResult(
        study=name,
        storage=shown,
        out=out,
        requested=trials,
        counts=dict(budget.states()),
        best=sweep_files.best_row(rows),
        trials=rows,
        seconds=time.perf_counter() - t0,
    )
    result.files = sweep_files.write_all(result, target, sp, about)
    return result


def _hide_password(url: str) -> str:
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL SQLAlchemy can parse: nothing to hide that it would find
        return url


def _log_start(log, study, budget: Budget, target: Target, sp, predict: str, url: str) -> None:
    states = budget.states()
    have = ", ".join(f"{n} {k.lower()}" for k, n in sorted(states.items())) or "no trials yet"
    log(f"study {study.study_name!r} in {url}: {have}; {budget.n} to count (complete + pruned)")
    log(
        f"target: {target.kind} {target.name} ({len(target.train)} train / {len(target.val)} "
        f"validation sequences); objective: validation {target.loss} with {predict} prediction"
    )
    log("space: " + "; ".join(spaces.describe(sp)))
