"""Benchmark: the full DeepForest demo over several seeds; prints a table of the KD gain.

    .venv/bin/python benchmarks/demo_seeds.py --seeds 0 1 2 --out bench-demo

Each seed runs the whole chain (teacher, plain student, distilled student, evaluation)
in OUT/seed<N>/; the table gives mAP_50 per model and seed, then mean and spread.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from kdctl.console import setup_logging
from kdctl.demo import run_demo


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=Path("bench-demo"))
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args()
    setup_logging(args.verbose)

    console = Console()
    rows = []
    for seed in args.seeds:
        t0 = time.time()
        summary = run_demo(args.out / f"seed{seed}", quick=args.quick, seed=seed,
                           console=console)
        m = {role: e["metrics"]["val/bbox_mAP_50"] for role, e in summary["models"].items()}
        rows.append(dict(seed=seed, minutes=(time.time() - t0) / 60, **m))
        (args.out / "bench.json").write_text(json.dumps(rows, indent=2))

    table = Table(title="DeepForest demo, val mAP_50 per seed")
    for col in ("seed", "teacher", "plain student", "distilled", "KD gain", "minutes"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(str(r["seed"]), f"{r['teacher']:.3f}", f"{r['student']:.3f}",
                      f"{r['distill']:.3f}", f"{r['distill'] - r['student']:+.3f}",
                      f"{r['minutes']:.1f}")
    if len(rows) > 1:
        def ms(values: list[float]) -> str:
            return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"

        table.add_row("mean ± sd", ms([r["teacher"] for r in rows]),
                      ms([r["student"] for r in rows]), ms([r["distill"] for r in rows]),
                      ms([r["distill"] - r["student"] for r in rows]),
                      f"{statistics.mean(r['minutes'] for r in rows):.1f}")
    console.print(table)


if __name__ == "__main__":
    main()
