"""minGRU over one chunk: the parallel scan (MinGRU.forward) against its own step loop (MinGRU.loop).

    .venv/bin/python benchmarks/bench_mingru_scan.py [--quick]

For each chunk length T, times forward + backward of one layer (batch 32, 8 inputs, 64 hidden,
float32, one thread) both ways, interleaved (scan, loop, scan, loop, ...) so that a change in
machine load hits both alike, and reports the medians of wall time and of process CPU time.
Both compute the same numbers (tests/test_mingru.py holds them to 1e-10 in float64). Writes
benchmarks/results/mingru_scan.json with the load average (`uptime`) before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from statefulrnn.model.cells.mingru import MinGRU

BATCH, FEATURES, HIDDEN = 32, 8, 64
LENGTHS = (8, 32, 128, 512)
RESULTS = Path(__file__).parent / "results" / "mingru_scan.json"


def one_pass(layer: MinGRU, x: torch.Tensor, h0: torch.Tensor, scan: bool) -> None:
    out, hn = (layer if scan else layer.loop)(x, h0)
    (out.sum() + hn.sum()).backward()


def timed(layer: MinGRU, x: torch.Tensor, h0: torch.Tensor, scan: bool) -> tuple[float, float]:
    """Wall and CPU seconds of one forward + backward."""
    wall, cpu = time.perf_counter(), time.process_time()
    one_pass(layer, x, h0, scan)
    return time.perf_counter() - wall, time.process_time() - cpu


def measure(steps: int, repeats: int) -> dict:
    torch.manual_seed(0)
    layer = MinGRU(FEATURES, HIDDEN)
    x = torch.randn(BATCH, steps, FEATURES)
    h0 = torch.randn(1, BATCH, HIDDEN)
    for scan in (True, False):  # warm-up
        one_pass(layer, x, h0, scan)
    times: dict[str, dict[str, list[float]]] = {
        k: {"wall": [], "cpu": []} for k in ("scan", "loop")
    }
    for _ in range(repeats):
        for name, scan in (("scan", True), ("loop", False)):
            wall, cpu = timed(layer, x, h0, scan)
            times[name]["wall"].append(wall)
            times[name]["cpu"].append(cpu)
    row: dict = {"steps": steps, "repeats": repeats}
    for name, t in times.items():
        row[f"{name}_wall_ms"] = 1e3 * statistics.median(t["wall"])
        row[f"{name}_cpu_ms"] = 1e3 * statistics.median(t["cpu"])
    row["speedup_wall"] = row["loop_wall_ms"] / row["scan_wall_ms"]
    row["speedup_cpu"] = row["loop_cpu_ms"] / row["scan_cpu_ms"]
    return row


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 repeats instead of 9")
    args = parser.parse_args()
    torch.set_num_threads(1)
    load_before = os.getloadavg()
    rows = [measure(t, 3 if args.quick else 9) for t in LENGTHS]
    result = {
        "what": "minGRU layer forward+backward per chunk: parallel scan vs step loop (medians)",
        "batch": BATCH,
        "features": FEATURES,
        "hidden": HIDDEN,
        "dtype": "float32",
        "threads": 1,
        "rows": rows,
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"load average {load_before[0]:.2f} -> {result['load_average_after'][0]:.2f}")
    print(f"{'T':>5} {'scan ms':>9} {'loop ms':>9} {'x wall':>7} {'x cpu':>7}")
    for r in rows:
        print(
            f"{r['steps']:>5} {r['scan_wall_ms']:>9.2f} {r['loop_wall_ms']:>9.2f} "
            f"{r['speedup_wall']:>7.1f} {r['speedup_cpu']:>7.1f}"
        )
    print(f"wrote {RESULTS}")
    return result


if __name__ == "__main__":
    main()
