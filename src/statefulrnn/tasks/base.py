"""What a built-in task is: a data generator with the seed's settings, the configurations the
seed compares, and the seed's claims checked against our numbers.

Knows sequences and training settings; runs nothing itself (experiments do that).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from statefulrnn.data.sequences import Sequences


@dataclass(frozen=True)
class Param:
    """A task parameter: its default, its `--quick` value, and what it means."""

    default: Any
    quick: Any
    help: str


@dataclass
class TaskData:
    """Train / validation / test sequences of one task instance, with its scoring."""

    train: Sequences
    val: Sequences
    test: Sequences
    loss: str  # "mse" or "bce"
    metric: str  # what the summary reports: "loss" (an MSE) or "accuracy"
    baseline: dict[str, float]  # e.g. {"zero predictor": 0.0072}: what no memory at all scores
    focus: dict[str, Sequences] = field(
        default_factory=dict
    )  # test re-weighted to a region of interest
    notes: list[str] = field(default_factory=list)
    # steps [start, stop) of each example series kept for the report's plot: a readable excerpt
    # (a few periods of a sine, not forty)
    excerpt: tuple[int, int] = (0, 400)


@dataclass(frozen=True)
class Config:
    """One configuration to train and evaluate: a model, a fit recipe, and how to predict."""

    name: str  # short id, e.g. "stateless-seed"
    label: str  # what the report calls it
    model: dict[str, Any]  # StatefulRNN arguments besides input/output size
    fit: dict[str, Any]  # sr.fit arguments (mode, window, batch_size, epochs, ...)
    predict_window: int  # window of the windowed prediction
    predict_burn_in: int | None = None  # burn-in of the windowed prediction
    origin: str = "seed"  # "seed": the seed's recipe; "statefulrnn": our recommendation
    seed: int = 0  # model initialisation and training order
    # True: no --quick budget shows what this recipe does (e.g. the seed's own lagged-product
    # recipes, which leave the zero predictor's plateau only after many epochs); --quick skips it
    # and its claims say "needs the full run" instead of judging a run too small to tell.
    full_only: bool = False
    full_minutes: float | None = None  # what the full run of this configuration takes, 2 cores


NEEDS_FULL_RUN = "needs the full run"


@dataclass
class Claim:
    """A seed claim and our verdict: reproduced, not reproduced, or informational."""

    claim: str
    seed_value: str
    ours: str
    verdict: str  # one of experiments.compare.VERDICTS, e.g. "reproduced", "needs the full run"
    full_minutes: float | None = None  # with "needs the full run": how long that run takes


def needs_full_run(claim: str, seed_value: str, results: dict, name: str) -> Claim:
    """The claim about configuration `name`, which --quick did not run (see Config.full_only)."""
    skipped = results["not_run"][name]
    minutes = skipped.get("full_minutes")
    about = f" (about {minutes:.0f} min on 2 cores)" if minutes else ""
    return Claim(
        claim,
        seed_value,
        f"not run by --quick: {skipped['label']} needs the full settings{about}; "
        f"run: statefulrnn compare {results['task']} --only {name}",
        NEEDS_FULL_RUN,
        minutes,
    )


def skipped(results: dict, name: str) -> bool:
    """Whether --quick left configuration `name` out (its claims need the full run)."""
    return name in results.get("not_run", {})


@dataclass(frozen=True)
class Task:
    """A built-in task: `generate(params, seed)` and `configs(params)`; `claims(results)`."""

    name: str
    seed_file: str
    summary: str
    params: dict[str, Param]
    generate: Callable[[dict[str, Any], int], TaskData]
    configs: Callable[[dict[str, Any]], list[Config]]
    claims: Callable[[dict[str, Any], dict[str, Any]], list[Claim]]
    rerun: str = ""
    # the page's first sentence: does carrying state help here, with the deciding numbers
    answer: Callable[[dict[str, Any], dict[str, Any]], str] | None = None

    def resolve(
        self, quick: bool = False, overrides: dict[str, str] | None = None
    ) -> dict[str, Any]:
        """Parameter values: defaults (or quick values), then `--set name=value` overrides."""
        values = {k: (p.quick if quick else p.default) for k, p in self.params.items()}
        for key, raw in (overrides or {}).items():
            if key not in self.params:
                close = [k for k in self.params if k.startswith(key[:3])]
                hint = f" Did you mean {close[0]!r}?" if close else ""
                raise ValueError(
                    f"task {self.name!r} has no parameter {key!r}.{hint} "
                    f"Its parameters: {', '.join(self.params)}."
                )
            values[key] = _parse_like(raw, self.params[key].default, key)
        return values


def _parse_like(raw: str, default: Any, key: str) -> Any:
    if not isinstance(raw, str):
        return raw
    try:
        if isinstance(default, bool):
            if raw.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError
            return raw.lower() in ("true", "1", "yes")
        if isinstance(default, int):
            return int(raw)
        if isinstance(default, float):
            return float(raw)
    except ValueError:
        raise ValueError(f"--set {key}={raw}: expected a {type(default).__name__}.") from None
    return raw


def verdict(ok: bool) -> str:
    return "reproduced" if ok else "not reproduced"
