"""CLI = API, proven per option: every row of the README's `sr.fit` / `sr.predict` tables.

For each option the table names, `statefulrnn train` (or `predict`) runs three times on a
tiny CSV: with the flag, with the TOML key in a `--config` file, and without either. The
function the command ends in (`sr.fit`, or the model bundle's `predict`) is replaced by a spy
that records what it was asked to do and stops the run, so each case costs no training. The
flag and the TOML key must give the user's value; the run without them must not (so an option
silently dropped on the way cannot pass). The spy reads the arguments however `fit` is called
(keywords, or a config object's fields), so these tests go through the public entry points
only and survive a refactor of how `train` calls `fit`.

A second group parses the README tables and fails when a flag, a TOML key or a parameter of
`sr.fit` / `sr.predict` is missing from them or extra, and when a table row has no case here.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pd = pytest.importorskip("pandas")

import statefulrnn as sr  # noqa: E402
from statefulrnn import threads as thread_policy  # noqa: E402
from statefulrnn.bundle import ModelBundle  # noqa: E402
from statefulrnn.cli import build_parser, main  # noqa: E402
from statefulrnn.cli import options as cli_options  # noqa: E402

ROOT = Path(__file__).parents[1]
README = ROOT / "README.md"


# --------------------------------------------------------------------------- the data
@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """plain: 3 sensors x 40 rows, time increasing through the file (so the file reads with or
    without --id); short: its first 2 sensors; unsorted: rows shuffled; nan: one missing x1."""
    d = tmp_path_factory.mktemp("parity")
    rng = np.random.default_rng(0)
    n, ids = 40, 3
    df = pd.DataFrame(
        {
            "sensor": np.repeat(np.arange(ids), n),
            "t": np.arange(ids * n),
            "x1": rng.normal(size=ids * n),
            "x2": rng.normal(size=ids * n),
            "y": rng.integers(0, 2, ids * n).astype(float),  # 0/1: fits mse, bce and ce
            "y2": rng.normal(size=ids * n),
            "wt": np.tile([1.0, 0.0], ids * n // 2),
        }
    )
    out = {"plain": d / "plain.csv", "short": d / "short.csv"}
    df.to_csv(out["plain"], index=False)
    df[df.sensor < 2].to_csv(out["short"], index=False)
    out["unsorted"] = d / "unsorted.csv"
    df.sample(frac=1.0, random_state=1).to_csv(out["unsorted"], index=False)
    nan = df.copy()
    nan.loc[5, "x1"] = np.nan
    out["nan"] = d / "nan.csv"
    nan.to_csv(out["nan"], index=False)
    return out


# --------------------------------------------------------------------------- the spy
NO_CALL = "<the command stopped before the call>"


class _Stop(Exception):
    """Raised by the spy once it has recorded the call: the command stops there."""


@dataclass
class Call:
    """What the spied function was asked: its arguments, config objects' fields filled in."""

    args: dict[str, Any]
    threads: int | None  # the thread count in force: the argument, or the process default

    def __getitem__(self, name: str) -> Any:
        return self.args[name]


def _effective(func: Callable, args: tuple, kwargs: dict) -> dict[str, Any]:
    """Arguments by name: those given, then the fields of any config object given (a
    dataclass), then the function's defaults."""
    sig = inspect.signature(func)
    given = dict(sig.bind(*args, **kwargs).arguments)
    for name, p in sig.parameters.items():
        if p.kind is inspect.Parameter.VAR_KEYWORD:
            given.update(given.pop(name, {}))
    out = dict(given)
    for value in given.values():
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            for f in dataclasses.fields(value):
                out.setdefault(f.name, getattr(value, f.name))
    for name, p in sig.parameters.items():
        if p.default is not inspect.Parameter.empty:
            out.setdefault(name, p.default)
    return out


def _spy(monkeypatch, func: Callable, calls: list[Call]) -> None:
    """Replace `func` wherever a statefulrnn module holds it (imported by name or not), or,
    for a method of ModelBundle, on the class."""

    def spy(*args, **kwargs):
        a = _effective(func, args, kwargs)
        threads = a.get("threads")
        calls.append(Call(a, threads if threads is not None else thread_policy.get_default()))
        raise _Stop()

    if func is ModelBundle.predict:
        monkeypatch.setattr(ModelBundle, "predict", spy)
        return
    found = False
    for name, module in list(sys.modules.items()):
        if name == "statefulrnn" or name.startswith("statefulrnn."):
            for attr, value in list(vars(module).items()):
                if value is func:
                    monkeypatch.setattr(module, attr, spy)
                    found = True
    assert found, f"{func.__qualname__} is not held by any statefulrnn module"


# --------------------------------------------------------------------------- train cases
@dataclass
class Case:
    """One option: its flag arguments, its TOML key and value, and what the spy must see."""

    key: str  # the option's TOML key (= the flag's long name)
    flag: list[str]  # command-line arguments giving it
    toml: str  # the same in a config file
    view: Callable[[Call], Any]  # what of the call shows the option
    want: Any = ...  # what `view` must give with the option (...: whatever flag and TOML agree on)
    data: str = "plain"  # which file
    context: list[str] = field(default_factory=list)  # flags the option needs beside it
    ref: list[str] = field(default_factory=list)  # the run without it (required: another value)
    id: str = ""

    def __post_init__(self):
        self.id = self.id or self.key


def _kw(name: str) -> Callable[[Call], Any]:
    return lambda c: c[name]


def _first_x(c: Call) -> tuple[float, ...]:
    return tuple(np.round(c["train"].xs[0][:4, 0], 6))


def _patience(c: Call) -> list[int]:
    return [cb.patience for cb in c["callbacks"] if isinstance(cb, sr.EarlyStopping)]


def _monitors(c: Call) -> list[str]:
    return [cb.monitor for cb in c["callbacks"] if isinstance(cb, sr.EarlyStopping)]


def _scored(part: str) -> Callable[[Call], int]:
    return lambda c: int(sum((w > 0).sum() for w in c[part].ws))


# base options of every train run (a case drops its own key from these)
TRAIN_BASE = {
    "time": ["--time", "t"],
    "features": ["--features", "x1,x2"],
    "targets": ["--targets", "y"],
    "epochs": ["--epochs", "1"],
}

TRAIN_CASES = [
    Case(
        "data",
        ["{short}"],
        'data = "{short}"',
        lambda c: int(c["train"].lengths.sum()),
        want=64,
        ref=["{plain}"],
    ),
    Case(
        "features",
        ["--features", "x1"],
        'features = ["x1"]',
        lambda c: c["train"].num_features,
        want=1,
        ref=["--features", "x1,x2"],
    ),
    Case(
        "targets",
        ["--targets", "y2"],
        'targets = "y2"',
        lambda c: tuple(np.round(c["train"].ys[0][:4, 0], 6)),
        ref=["--targets", "y"],
    ),
    Case("id", ["--id", "sensor"], 'id = "sensor"', lambda c: len(c["train"]), want=3),
    Case("time", ["--time", "t"], 'time = "t"', _first_x, data="unsorted", context=["--sort"]),
    Case("weight", ["--weight", "wt"], 'weight = "wt"', _scored("train")),
    Case("horizon", ["--horizon", "3"], "horizon = 3", _scored("train")),
    Case(
        "fill",
        ["--fill", "forward"],
        'fill = "forward"',
        lambda c: c["train"].lengths.sum(),
        want=96,
        data="nan",
    ),
    Case(
        "drop", ["--drop"], "drop = true", lambda c: c["train"].lengths.sum(), want=95, data="nan"
    ),
    Case("sort", ["--sort"], "sort = true", _first_x, data="unsorted"),
    Case("val", ["--val", "0.5"], "val = 0.5", _scored("val"), want=60),
    Case("mode", ["--mode", "stateless"], 'mode = "stateless"', _kw("mode"), want="stateless"),
    Case("window", ["--window", "7"], "window = 7", _kw("window"), want=7),
    Case("batch_size", ["--batch-size", "3"], "batch-size = 3", _kw("batch_size"), want=3),
    Case("epochs", ["--epochs", "3"], "epochs = 3", _kw("epochs"), want=3, ref=["--epochs", "1"]),
    Case("loss", ["--loss", "bce"], 'loss = "bce"', _kw("loss"), want="bce"),
    Case(
        "loss",
        ["--loss", "ce"],
        'loss = "ce"',
        lambda c: (c["loss"], c["model"].output_size),
        want=("ce", 2),
        id="loss-ce",
    ),
    Case("optimizer", ["--optimizer", "sgd"], 'optimizer = "sgd"', _kw("optimizer"), want="sgd"),
    Case("lr", ["--lr", "0.0123"], "lr = 0.0123", _kw("lr"), want=0.0123),
    Case("clip", ["--clip", "0.5"], "clip = 0.5", _kw("clip"), want=0.5),
    Case("clip", ["--clip", "none"], 'clip = "none"', _kw("clip"), want=None, id="clip-none"),
    Case("seed", ["--seed", "7"], "seed = 7", _kw("seed"), want=7),
    Case(
        "stride",
        ["--stride", "2"],
        "stride = 2",
        _kw("stride"),
        want=2,
        context=["--mode", "stateless"],
    ),
    Case(
        "target",
        ["--target", "last"],
        'target = "last"',
        _kw("target"),
        want="last",
        context=["--mode", "stateless"],
    ),
    Case(
        "backprop",
        ["--backprop", "8"],
        "backprop = 8",
        _kw("backprop"),
        want=8,
        context=["--window", "4"],
    ),
    Case(
        "burn_in",
        ["--burn-in", "3"],
        "burn-in = 3",
        _kw("burn_in"),
        want=3,
        context=["--mode", "stateless"],
    ),
    Case(
        "burn_in",
        ["--burn-in", "all"],
        'burn_in = "all"',
        _kw("burn_in"),
        want="all",
        context=["--mode", "stateless"],
        id="burn_in-all",
    ),
    Case("shuffle", ["--no-shuffle"], "shuffle = false", _kw("shuffle"), want=False),
    Case(
        "val_window",
        ["--val-window", "5"],
        "val-window = 5",
        _kw("val_window"),
        want=5,
        context=["--mode", "stateless"],
    ),
    Case("patience", ["--patience", "2"], "patience = 2", _patience, want=[2]),
    Case(
        "monitor",
        ["--monitor", "val_loss_windowed"],
        'monitor = "val_loss_windowed"',
        lambda c: (_monitors(c), c["val_window"]),
        want=(["val_loss_windowed"], 50),  # a stateful model: the windowed loss needs a window
    ),
    Case("device", ["--device", "cpu"], 'device = "cpu"', lambda c: str(c["device"]), want="cpu"),
    Case("threads", ["--threads", "1"], "threads = 1", lambda c: c.threads, want=1),
    Case("cell", ["--cell", "gru"], 'cell = "gru"', lambda c: c["model"].cell, want="gru"),
    Case("hidden", ["--hidden", "7"], "hidden = 7", lambda c: c["model"].hidden_size, want=7),
    Case("layers", ["--layers", "2"], "layers = 2", lambda c: c["model"].num_layers, want=2),
]
# flags of the table tested elsewhere: --distributed needs torchrun's processes
ELSEWHERE = {
    "--distributed": "test_distributed.py::test_train_command_under_torchrun_trains_once_and_"
    "writes_once"
}


def _fill(args: list[str], files: dict[str, Path]) -> list[str]:
    return [a.format(**{k: str(v) for k, v in files.items()}) for a in args]


def _run(command: str, args: list[str], monkeypatch, func, capsys) -> Call | None:
    """Run `statefulrnn COMMAND ARGS` with `func` spied on: its call, or None if the command
    ended before reaching it (an error: printed to stderr)."""
    calls: list[Call] = []
    with monkeypatch.context() as m:
        _spy(m, func, calls)
        code = main([command, *args])
    err = capsys.readouterr().err
    assert len(calls) <= 1
    if not calls:
        assert code != 0, f"statefulrnn {command} {args} ended well without calling the spy"
        return None
    assert "_Stop" in err  # the spy stopped it (reported as one error line)
    return calls[0]


def _train_args(case: Case, files, out: Path, how: str, tmp_path: Path) -> list[str]:
    base = {k: v for k, v in TRAIN_BASE.items() if k != case.key}
    data = [] if case.key == "data" else [str(files[case.data])]
    args = data + [a for v in base.values() for a in v] + _fill(case.context, files)
    args += ["--out", str(out)]
    if how == "flag":
        return args + _fill(case.flag, files)
    if how == "toml":
        config = tmp_path / f"{case.id}.toml"
        config.write_text(_fill([case.toml], files)[0] + "\n")
        return args + ["--config", str(config)]
    return args + _fill(case.ref, files)


@pytest.fixture(scope="module")
def train_module():
    import statefulrnn.tabular.train  # noqa: F401  (the modules that hold `fit` are loaded)
    from statefulrnn.train.fit import fit

    return fit


@pytest.mark.parametrize("case", TRAIN_CASES, ids=lambda c: c.id)
def test_train_flag_and_toml_key_reach_fit(
    case, files, train_module, monkeypatch, capsys, tmp_path
):
    seen = {}
    for how in ("flag", "toml", "without"):
        args = _train_args(case, files, tmp_path / f"out-{how}", how, tmp_path)
        call = _run("train", args, monkeypatch, train_module, capsys)
        seen[how] = case.view(call) if call is not None else NO_CALL
    assert seen["flag"] != NO_CALL, seen
    assert seen["flag"] == seen["toml"], seen
    if case.want is not ...:
        assert seen["flag"] == case.want, seen
    assert seen["without"] != seen["flag"], f"{case.key} changes nothing: {seen}"


# --------------------------------------------------------------------------- predict cases
@pytest.fixture(scope="module")
def stateless_model(files, tmp_path_factory) -> Path:
    """A tiny stateless model (window 5, no burn-in) trained by `statefulrnn train`."""
    out = tmp_path_factory.mktemp("parity-model") / "m"
    args = ["train", str(files["plain"]), "--time", "t", "--features", "x1,x2", "--targets", "y"]
    args += ["--mode", "stateless", "--window", "5", "--epochs", "1", "--out", str(out)]
    assert main(args) == 0
    return out


def _rows(c: Call) -> int:
    return int(sum(len(x) for x in c["seqs"].xs))


PREDICT_BASE = {"model": ["{model}"], "data": ["{plain}"]}
PREDICT_CASES = [
    Case("model", ["{model}"], 'model = "{model}"', lambda c: c["self"].window, want=5),
    Case("data", ["{short}"], 'data = "{short}"', _rows, want=80, ref=["{plain}"]),
    Case(
        "mode",
        ["--mode", "stateful"],
        'mode = "stateful"',
        lambda c: c["mode"] or c["self"].predict_mode,
        want="stateful",
    ),
    Case("window", ["--window", "3"], "window = 3", _kw("window"), want=3),
    Case("burn_in", ["--burn-in", "2"], "burn-in = 2", _kw("burn_in"), want=2),
    Case("fill", ["--fill", "forward"], 'fill = "forward"', _rows, want=120, data="nan"),
    Case("drop", ["--drop"], "drop = true", _rows, want=119, data="nan"),
    Case(
        "sort",
        ["--sort"],
        "sort = true",
        lambda c: tuple(np.round(c["seqs"].xs[0][:4, 0], 6)),
        data="unsorted",
    ),
    Case("threads", ["--threads", "1"], "threads = 1", lambda c: c.threads, want=1),
]


def _predict_args(case: Case, names: dict[str, Any], how: str, tmp_path: Path) -> list[str]:
    """MODEL_DIR DATA (each positional, unless the case is about it) and the case's option.
    A config file giving MODEL_DIR gives DATA too: DATA alone on the command line would be
    read as MODEL_DIR."""
    model = [] if case.key == "model" else ["{model}"]
    data = (
        []
        if case.key == "data" or (case.key == "model" and how == "toml")
        else ["{" + case.data + "}"]
    )
    positional = {"model": model, "data": data}
    if case.key in positional:
        given = {"flag": case.flag, "toml": [], "without": case.ref}[how]
        positional[case.key] = given
        args = positional["model"] + positional["data"]
    else:
        args = model + data + {"flag": case.flag, "toml": [], "without": case.ref}[how]
    args = _fill(args, names) + ["-o", str(tmp_path / f"{how}.csv")]
    if how == "toml":
        config = tmp_path / f"{case.id}.toml"
        text = case.toml + ('\ndata = "{plain}"' if case.key == "model" else "")
        config.write_text("[predict]\n" + _fill([text], names)[0] + "\n")
        args += ["--config", str(config)]
    return args


@pytest.mark.parametrize("case", PREDICT_CASES, ids=lambda c: c.id)
def test_predict_flag_and_toml_key_reach_predict(
    case, files, stateless_model, monkeypatch, capsys, tmp_path
):
    names = {**files, "model": stateless_model}
    seen = {}
    for how in ("flag", "toml", "without"):
        args = _predict_args(case, names, how, tmp_path)
        call = _run("predict", args, monkeypatch, sr.ModelBundle.predict, capsys)
        seen[how] = case.view(call) if call is not None else NO_CALL
    assert seen["flag"] != NO_CALL, seen
    assert seen["flag"] == seen["toml"], seen
    if case.want is not ...:
        assert seen["flag"] == case.want, seen
    assert seen["without"] != seen["flag"], f"{case.key} changes nothing: {seen}"


# --------------------------------------------------------------------------- the README
def _readme_table(first_header: str) -> list[tuple[str, str]]:
    """(Python cell, CLI cell) of each row of the README table whose header starts so."""
    lines = README.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first_header}"))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows.append((cells[0], cells[1]))
    return rows


def _python_names(cell: str) -> set[str]:
    return {m.group(1) for m in re.finditer(r"`\**([a-z_]+)(?![\w.])", cell)}


def _flags(cell: str) -> set[str]:
    return set(re.findall(r"`(--[a-z-]+)", cell)) | set(re.findall(r"`([A-Z_]+)`", cell))


def _parser_options(command: str) -> dict[str, str]:
    """Option string (or positional METAVAR) -> dest, for `statefulrnn COMMAND`."""
    sub = next(a for a in build_parser()._actions if a.__class__.__name__ == "_SubParsersAction")
    out = {}
    for a in sub.choices[command]._actions:
        if a.option_strings:
            long = [s for s in a.option_strings if s.startswith("--")]
            out[long[0]] = a.dest
        else:
            out[a.metavar] = a.dest
    return out


# flags that say where things go, not how the model is trained / predicted
NOT_FIT = {"--help", "--config", "--out", "--force"}
NOT_PREDICT = {"--help", "--config", "--output", "--no-escape-formulas"}


@pytest.mark.parametrize(
    "header, func, command, cases, not_options",
    [
        ("`sr.fit(...)`", sr.fit, "train", TRAIN_CASES, NOT_FIT),
        ("`sr.predict(...)`", sr.predict, "predict", PREDICT_CASES, NOT_PREDICT),
    ],
    ids=["fit", "predict"],
)
def test_readme_table_names_every_parameter_flag_and_toml_key(
    header, func, command, cases, not_options
):
    rows = _readme_table(header)
    python = set().union(*(_python_names(p) for p, _ in rows))
    params = _parameters(func)
    assert params - python == set(), f"sr.{func.__name__} parameters missing from the README"
    assert python - params == set(), f"README names what sr.{func.__name__} does not take"

    flags = set().union(*(_flags(c) for _, c in rows))
    declared = _parser_options(command)
    assert set(declared) - not_options - flags == set(), f"{command} flags missing from README"
    assert flags - set(declared) == set(), f"README flags that {command} does not have"

    # every flag has a TOML key, unless the README says it is a flag only
    flag_only = set().union(*(_flags(c) for _, c in rows if "flag only" in c))
    for flag in flags - flag_only:
        assert declared[flag] in cli_options.CONVERT, f"{flag} has no TOML key"
    # ... and every flag has a case above that proves it reaches the function
    tested = {_flag_of(c.key, declared) for c in cases} | (set(ELSEWHERE) & set(declared))
    assert flags - tested == set(), f"README flags with no parity case in {__name__}"
    assert tested - flags == set(), "parity cases for flags the README does not list"


def _parameters(func: Callable) -> set[str]:
    """The names a call of `func` takes: its parameters, and for `**options` (fit's), the
    fields of sr.TrainConfig that they name."""
    params = set(inspect.signature(func).parameters)
    if "options" in params:
        params |= {f.name for f in dataclasses.fields(sr.TrainConfig)}
    return params


def _flag_of(key: str, declared: dict[str, str]) -> str:
    return next(flag for flag, dest in declared.items() if dest == key)
