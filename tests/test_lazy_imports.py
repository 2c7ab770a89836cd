"""`import statefulrnn`, the command line's parser and `statefulrnn.reports` do not import torch.

Each check runs in a fresh interpreter (this one has torch loaded already) and reads
`sys.modules` after the import. The public names still work: `__all__`, `dir()` and
`sr.fit`-style access resolve them on first use.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import statefulrnn as sr


def loaded_after(code: str) -> set[str]:
    """The top-level modules a fresh interpreter has loaded after running `code`."""
    probe = f"{code}\nimport json, sys\nprint(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}})))"
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120
    )
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


HEAVY = {"torch", "numpy", "pandas", "matplotlib", "optuna", "h5py", "onnx"}


@pytest.mark.parametrize(
    "code",
    [
        "import statefulrnn",
        "import statefulrnn; dir(statefulrnn); statefulrnn.__all__; statefulrnn.__version__",
        "from statefulrnn.cli import build_parser; build_parser()",
        "import statefulrnn.tabular, statefulrnn.tabular.config",
    ],
)
def test_importing_the_package_or_building_the_parser_loads_nothing_heavy(code):
    assert not loaded_after(code) & HEAVY


def test_every_subcommand_help_is_built_without_torch():
    from statefulrnn.cli import COMMANDS

    for name in COMMANDS:
        code = (
            "import contextlib, io\nfrom statefulrnn.cli import main\n"
            f"with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
            f"    main([{name!r}, '--help'])"
        )
        assert "torch" not in loaded_after(code), name


def test_reports_import_no_torch():
    code = "import statefulrnn.reports, statefulrnn.reports.html, statefulrnn.reports.sweep"
    loaded = loaded_after(code)
    assert "matplotlib" in loaded  # the probe does see what an import loads
    assert "torch" not in loaded


def test_reading_a_public_name_imports_it():
    assert "torch" in loaded_after("import statefulrnn; statefulrnn.fit")


def test_public_names_resolve_and_are_listed():
    names = set(sr.__all__)
    assert {"fit", "Sequences", "predict", "evaluate", "StreamPool", "from_keras"} <= names
    assert names <= set(dir(sr))
    for name in sorted(names - {"sweep"}):  # sweep needs the optional Optuna
        assert getattr(sr, name) is not None, name
    assert sr.fit.__module__ == "statefulrnn.train.fit"
    assert sr.Sequences.__name__ == "Sequences"
    with pytest.raises(AttributeError, match="no attribute 'not_a_name'"):
        sr.not_a_name  # noqa: B018


def test_the_package_exports_table_and_all_agree():
    assert sorted(sr.__all__) == sorted(sr._EXPORTS)


def test_predict_stays_the_function_after_its_module_is_imported():
    code = (
        "import statefulrnn as sr, statefulrnn.predict\n"
        "from statefulrnn.predict import error_by_step\n"
        "assert callable(sr.predict) and sr.predict.__name__ == 'predict', sr.predict\n"
        "assert sr.evaluate.__name__ == 'evaluate'"
    )
    loaded_after(code)  # check=True: an AssertionError fails the run


def test_each_built_in_kind_is_registered_by_the_module_named_for_it():
    import importlib

    from statefulrnn.model import base

    for kind, module in base.BUILT_IN_KINDS.items():
        importlib.import_module(module)
        assert base._KINDS[kind].kind == kind


def test_a_fresh_process_loads_a_checkpoint_before_importing_the_model_class(tmp_path):
    from statefulrnn.model import StatefulRNN

    StatefulRNN(2, 3, 1, cell="gru").save(tmp_path / "m")
    code = f"import statefulrnn as sr\nprint(type(sr.load_model({str(tmp_path / 'm')!r})).__name__)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == "StatefulRNN"
