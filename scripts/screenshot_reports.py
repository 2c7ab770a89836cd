"""Screenshot compare reports in headless Chromium, as a reader's browser shows them.

    .venv/bin/python scripts/screenshot_reports.py RUN_DIR [--width 1400] [--height 2400]

RUN_DIR is a `statefulrnn compare` output folder: with `--all`, index.html and one
TASK/report.html per task; otherwise report.html. Writes one PNG per page into
RUN_DIR/screenshots/ (index.png, TASK.png) and prints their paths. Chromium is Debian's
(`apt-get install chromium`); it runs offline with a throwaway profile, so the check sees what
a reader without network sees (the pages embed their images). Look at every PNG yourself:
the script only proves that each page renders.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
]


def pages(run_dir: Path) -> list[tuple[str, Path]]:
    """(name, html file) of every page of a compare run folder."""
    found = []
    if (run_dir / "index.html").exists():
        found.append(("index", run_dir / "index.html"))
    if (run_dir / "report.html").exists():
        found.append((run_dir.name, run_dir / "report.html"))
    found += [(p.parent.name, p) for p in sorted(run_dir.glob("*/report.html"))]
    return found


def screenshot(browser: str, page: Path, out: Path, width: int, height: int) -> None:
    with tempfile.TemporaryDirectory() as profile:
        cmd = [
            browser,
            *FLAGS,
            f"--user-data-dir={profile}",
            f"--window-size={width},{height}",
            f"--screenshot={out}",
            page.resolve().as_uri(),
        ]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if not out.exists() or out.stat().st_size == 0:
        errors = [line for line in done.stderr.splitlines() if "failed" in line.lower()]
        raise RuntimeError(
            f"chromium wrote no screenshot of {page} (exit {done.returncode}): "
            + (errors[-1] if errors else done.stderr[-300:])
        )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--width", type=int, default=1400)
    ap.add_argument("--height", type=int, default=2400)
    ap.add_argument("--browser", default=shutil.which("chromium") or "chromium")
    args = ap.parse_args(argv)
    found = pages(args.run_dir)
    if not found:
        print(f"no index.html or report.html under {args.run_dir}", file=sys.stderr)
        return 2
    out_dir = args.run_dir / "screenshots"
    out_dir.mkdir(exist_ok=True)
    for name, page in found:
        out = out_dir / f"{name}.png"
        screenshot(args.browser, page, out, args.width, args.height)
        print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
