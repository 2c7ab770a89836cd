"""No input line can stop `statefulrnn stream`: bounded reading and parsing (streams/lines.py).

The oracle for the good lines is the same input without the bad ones: a bad line gets one
error line naming it, changes no stream's state, and the good lines around it get exactly
the answers they get alone. Bad lines include the ones that killed or stalled the server
(issue 18, Found 2): a 401-digit number, JSON nested 100,000 deep, a CSV field over 128 KB,
a line far over the size limit.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import make_rnn
from hypothesis import assume, given
from hypothesis import strategies as st

import statefulrnn as sr
from statefulrnn.cli.stream import answer
from statefulrnn.streams.lines import LineError, LineLimits, LineReader, parse_line

F = 2
TOL32 = 1e-5
LIMITS = LineLimits(max_line_bytes=4096)


def make_model(seed=0):
    return make_rnn(F, 6, 1, "gru", seed=seed, eval=True)


MODEL = make_model()


def good_lines(n=9) -> list[str]:
    rng = np.random.default_rng(0)
    out = []
    for t in range(n):
        sid = f"good{t % 3}"
        x = [round(float(v), 6) for v in rng.normal(size=F)]
        out.append(json.dumps({"id": sid, "x": x}) if t % 2 else ",".join([sid, *map(str, x)]))
    return out


# the lines that killed or stalled the server, and their cousins
NASTY = [
    '{"id": "a", "x": [' + "9" * 401 + ", 1]}",  # OverflowError in float()
    '{"id": "a", "x": [1' + "0" * 5000 + ", 1]}",  # int()'s digit limit
    '{"id": ' + "9" * 401 + ', "x": [1, 2]}',
    "[" * 100_000 + "]" * 100_000,  # RecursionError in json.loads
    '{"id": "a", "x": ' + "[" * 50 + "]" * 50 + "}",
    "a," + "1" * 200_000 + ",2",  # csv's 128 KB field limit
    'a,"' + "x" * 200_000,  # an unterminated quoted field
    "a," + "9" * 401 + ",1",  # float('999...') is inf
    '{"id": "a", "x": [NaN, 1]}',
    '{"id": "a", "x": [Infinity, 1]}',
    '{"id": "a", "x": [-Infinity, 1]}',
    "a,nan,1",
    "a,inf,1",
    "a,-Infinity,1",
    "a,1_0,1",  # float() would take it
    '{"id": "a", "x": [1e999, 1]}',
    '{"id": "a", "x": [true, 1]}',
    '{"id": "a", "x": [[1], 1]}',
    '{"id": "a", "x": {"0": 1}}',
    '{"id": null, "x": [1, 2]}',
    '{"id": ["a"], "x": [1, 2]}',
    '{"id": "' + "i" * 5000 + '", "x": [1, 2]}',
    '{"x": [1, 2]}',
    "{not json",
    '{"id": "a", "x": [1, 2]',
    ",1,2",
    "a,1",
    "a,1,2,3",
    '"\x00",1,2\x00',
    "\ufeffa,1,2,\u2028",
]


def run_lines(raw: bytes, tmp_path, max_batch=7, limits=LIMITS, model=MODEL) -> list[dict]:
    """Every line of `raw` through LineReader + answer, as `statefulrnn stream` does."""
    path = tmp_path / "in.txt"
    path.write_bytes(raw)
    pool = sr.StreamPool(model)
    out = []
    fd = os.open(path, os.O_RDONLY)
    try:
        reader = LineReader(fd, None, max_batch, limits)
        while (batch := reader.batch()) is not None:
            out += answer(pool, batch, "auto", limits)
    finally:
        os.close(fd)
    return out


def check_mixed(good: list[str], bad: dict[int, bytes], tmp_path, **kw) -> None:
    """Good lines with bad ones inserted (bad[i] goes before good[i]; i may be len(good)):
    one error per bad line, and the good lines' answers are those of the good lines alone."""
    alone = run_lines(("\n".join(good) + "\n").encode(), tmp_path, **kw)
    assert [o["line"] for o in alone] == list(range(1, len(good) + 1))
    mixed: list[bytes] = []
    good_at, bad_at = [], []
    for i in range(len(good) + 1):
        if i in bad:
            mixed.append(bad[i])
            bad_at.append(len(mixed))
        if i < len(good):
            mixed.append(good[i].encode())
            good_at.append(len(mixed))
    out = run_lines(b"\n".join(mixed) + b"\n", tmp_path, **kw)
    by_line = {o["line"]: o for o in out}
    for n in bad_at:
        assert n in by_line, f"bad line {n} got no answer"
        assert by_line[n]["error"].startswith(f"line {n}: ")
        assert "\n" not in by_line[n]["error"] and len(by_line[n]["error"]) < 300
    assert len(out) == len(mixed)
    for n, want in zip(good_at, alone):
        assert by_line[n]["id"] == want["id"]
        # the same numbers up to float32 rounding: batches differ, and the batch size picks
        # the kernel (test_streams holds every kernel to the stateful oracle)
        np.testing.assert_allclose(by_line[n]["y"], want["y"], rtol=0, atol=TOL32)


@pytest.mark.parametrize("nasty", NASTY, ids=range(len(NASTY)))
def test_each_nasty_line_gets_an_error_and_changes_no_stream(nasty, tmp_path):
    check_mixed(good_lines(), {4: nasty.encode()}, tmp_path, limits=LineLimits())


def test_a_line_over_the_limit_is_skipped_as_it_arrives(tmp_path):
    """A 20 MB line with a 4 KB limit: skipped in 64 KB reads, never held whole."""
    big = b'{"id": "a", "x": [' + b"1, " * 7_000_000 + b"1]}"
    check_mixed(good_lines(), {0: big, 5: b"b," + b"7" * 10_000 + b",1", 11: big}, tmp_path)
    # and a too-long last line without its newline
    out = run_lines(b"good0,1,2\n" + b"x" * 10_000, tmp_path)
    assert out[1] == {"line": 2, "error": "line 2: the line is longer than 4096 bytes; skipped"}


def test_invalid_utf8_is_an_error_line(tmp_path):
    check_mixed(good_lines(), {2: b"a\xff\xfe,1,2", 3: b'{"id": "\xc3", "x": [1, 2]}'}, tmp_path)


def test_parse_line_refuses_what_would_spoil_a_state():
    with pytest.raises(LineError, match=r"x\[0\] = 'nan' is not finite"):
        parse_line("a,nan,1", "auto", 2)
    with pytest.raises(LineError, match="NaN is not a finite number"):
        parse_line('{"id": "a", "x": [NaN, 1]}', "auto", 2)
    with pytest.raises(LineError, match="a number with 401 characters; numbers are at most 64"):
        parse_line('{"id": "a", "x": [' + "9" * 401 + ", 1]}", "auto", 2)
    with pytest.raises(LineError, match="JSON nested deeper than 8 levels"):
        parse_line("[" * 100_000, "json", 2)
    sid, x = parse_line('{"id": "[[[[[[[[[[", "x": [1, -2.5e3]}', "auto", 2)
    assert sid == "[[[[[[[[[[" and x.tolist() == [1.0, -2500.0]  # brackets in strings don't nest


# the fuzz: any text or bytes among good lines
LINE_CHARS = st.characters(blacklist_categories=["Cs"], blacklist_characters="\n")
ALPHABET = st.sampled_from(list('{}[]",:-+.eE0123456789 ') + ["NaN", "Infinity", "nan", "inf"])
BAD_LINE = st.one_of(
    st.text(LINE_CHARS, max_size=200).map(str.encode),
    st.binary(max_size=200).map(lambda b: b.replace(b"\n", b" ")),
    st.lists(ALPHABET, max_size=80).map(lambda p: ('{"id": "f", "x": [' + "".join(p)).encode()),
    st.lists(ALPHABET, max_size=80).map(lambda p: ("f," + "".join(p)).encode()),
    st.builds(lambda n, c: c.encode() * n, st.integers(1, 20_000), st.sampled_from('[{9,"x')),
    st.sampled_from(NASTY).map(str.encode),
)


def _harmless(line: bytes) -> bool:
    """A fuzzed line is meant to be bad; a valid one must not touch the good streams."""
    try:
        sid, _ = parse_line(line.decode("utf-8"), "auto", F, LIMITS)
    except (LineError, UnicodeDecodeError):
        return True
    return not str(sid).startswith("good") and str(sid).lower() != "id"


@given(
    bad=st.dictionaries(st.integers(1, 9), BAD_LINE, min_size=1, max_size=6),
    max_batch=st.integers(1, 16),
)
def test_fuzz_bad_lines_among_good_ones(bad, max_batch, tmp_path_factory):
    """The process goes on after any line; each bad line gets an error line naming it; the
    good lines get the answers they get alone. (Line 1 is always good: a CSV header there
    would be skipped, not answered.)"""
    bad = {i: line for i, line in bad.items() if line.decode("utf-8", "replace").strip()}
    valid = {i for i, line in bad.items() if _valid(line)}
    assume(all(_harmless(bad[i]) for i in valid))  # a valid line may not step a good stream
    bad = {i: line for i, line in bad.items() if i not in valid}
    assume(bad)
    check_mixed(good_lines(9), bad, tmp_path_factory.mktemp("fuzz"), max_batch=max_batch)


def _valid(line: bytes) -> bool:
    try:
        parse_line(line.decode("utf-8"), "auto", F, LIMITS)
    except (LineError, UnicodeDecodeError):
        return False
    return True


@given(
    cell=st.one_of(
        st.text(LINE_CHARS, max_size=40),
        st.sampled_from(
            ["nan", "inf", "-inf", "1e400", "9" * 401, "1_0", "0x10", "", " ", '"1"', "1e-400", "٣"]
        ),
    )
)
def test_fuzz_csv_cells(cell):
    """One cell of a CSV stream line: a finite float64 or a LineError, never anything else."""
    try:
        sid, x = parse_line(f"a,{cell},1", "csv", F)
    except LineError as err:
        assert "\n" not in str(err)
        return
    assert sid == "a" and np.isfinite(x).all() and x[1] == 1.0


CLI = "import sys; from statefulrnn.cli import main; sys.exit(main())"


def test_stream_cli_survives_every_nasty_line(tmp_path):
    """The real process, fed the lines that killed it, answers every one and exits 0."""
    MODEL.save(tmp_path / "model")
    good = good_lines(6)
    lines = [good[0], *NASTY[:6], good[1], "x" * (3 << 20), *good[2:]]
    proc = subprocess.run(
        [sys.executable, "-c", CLI, "stream", str(tmp_path / "model")],
        input=("\n".join(lines) + "\n").encode(),
        capture_output=True,
        timeout=120,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stderr.decode()
    out = [json.loads(s) for s in proc.stdout.decode().splitlines()]
    assert [o["line"] for o in out] == list(range(1, len(lines) + 1))
    assert [("error" in o) for o in out] == [False] + [True] * 6 + [False, True] + [False] * 4
    alone = run_lines(("\n".join(good) + "\n").encode(), tmp_path, limits=LineLimits())
    np.testing.assert_allclose(
        [o["y"] for o in out if "y" in o], [o["y"] for o in alone], rtol=0, atol=TOL32
    )
