"""Benchmark: the full DeepForest demo over several seeds; prints a table of the KD gain.

    .venv/bin/python benchmarks/demo_seeds.py --seeds 0 1 2 --out bench-demo [--jobs 2]

Each seed runs the whole chain (teacher, plain student, distilled student, evaluation)
in OUT/seed<N>/; the table gives mAP_50 per model and seed, then mean and spread. With
--jobs K, K seeds run at once in their own processes, the CPU cores shared out between
them (each process alone would use them all and the K would slow each other down).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from kdctl.console import setup_logging

ROLES = ("teacher", "student", "distill")


def run_seed(out: Path, seed: int, quick: bool, console: Console) -> dict:
    """One seed's chain in this process; its row is also written to OUT/seed<N>/bench.json."""
    from kdctl.demo import run_demo  # noqa: PLC0415

    t0 = time.time()
    summary = run_demo(out / f"seed{seed}", quick=quick, seed=seed, console=console)
    row = dict(seed=seed, minutes=(time.time() - t0) / 60)
    for entry in summary["models"]:  # the report's models: one entry per role and seed
        row[entry["role"]] = entry["metrics"]["val/bbox_mAP_50"]
        row[entry["role"] + "_mAP"] = entry["metrics"]["val/bbox_mAP"]
    (out / f"seed{seed}" / "bench.json").write_text(json.dumps(row, indent=2))
    return row


def run_parallel(args: argparse.Namespace) -> list[dict]:
    """Each seed in its own process, `jobs` at a time, with the cores shared out."""
    threads = str(max(1, (os.cpu_count() or 1) // args.jobs))
    env = dict(os.environ, OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads)
    pending, running, rows = list(args.seeds), [], []
    while pending or running:
        while pending and len(running) < args.jobs:
            seed = pending.pop(0)
            log = open(args.out / f"seed{seed}.log", "w")
            cmd = [sys.executable, __file__, "--seeds", str(seed), "--out", str(args.out)]
            cmd += ["--quick"] if args.quick else []
            running.append((seed, subprocess.Popen(cmd, env=env, stdout=log, stderr=log)))
        time.sleep(5)
        for seed, proc in [r for r in running if r[1].poll() is not None]:
            running.remove((seed, proc))
            if proc.returncode != 0:
                raise SystemExit(f"seed {seed} failed; see {args.out}/seed{seed}.log")
            rows.append(json.loads((args.out / f"seed{seed}" / "bench.json").read_text()))
    return sorted(rows, key=lambda r: r["seed"])


def print_table(rows: list[dict], console: Console) -> None:
    table = Table(title="DeepForest demo, val mAP_50 per seed (mAP in brackets)")
    for col in ("seed", "teacher", "plain student", "distilled", "KD gain", "minutes"):
        table.add_column(col, justify="right")
    for r in rows:
        cells = [f"{r[role]:.3f} ({r[role + '_mAP']:.3f})" for role in ROLES]
        table.add_row(str(r["seed"]), *cells, f"{r['distill'] - r['student']:+.3f}",
                      f"{r['minutes']:.1f}")
    if len(rows) > 1:
        def ms(values: list[float]) -> str:
            return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"

        table.add_row("mean ± sd", *(ms([r[role] for r in rows]) for role in ROLES),
                      ms([r["distill"] - r["student"] for r in rows]),
                      f"{statistics.mean(r['minutes'] for r in rows):.1f}")
    console.print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=Path("bench-demo"))
    parser.add_argument("--jobs", type=int, default=1, help="seeds run at once")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args()
    setup_logging(args.verbose)
    args.out.mkdir(parents=True, exist_ok=True)

    console = Console()
    if args.jobs > 1:
        rows = run_parallel(args)
    else:
        rows = [run_seed(args.out, seed, args.quick, console) for seed in args.seeds]
    (args.out / "bench.json").write_text(json.dumps(rows, indent=2))
    print_table(rows, console)


if __name__ == "__main__":
    main()
