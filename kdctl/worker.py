"""One process of a distributed run, started by torchrun from `kdctl.train`.

    python -m torch.distributed.run --nproc_per_node=N -m kdctl.worker RUN_DIR [--resume]

It trains the run folder's own config and spec; rank 0 shows the progress display.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from rich.console import Console

from kdctl.runs import load_run
from kdctl.spec import load_spec
from kdctl.train import build_runner, quiet_stdout


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="one process of a distributed kdctl run")
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--checkpoint", type=Path)
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)

    import torch  # noqa: PLC0415

    if not torch.cuda.is_available():
        # MMEngine's init_dist selects a CUDA device per rank; on CPU join with gloo here
        # and the Runner sees an initialised process group
        torch.distributed.init_process_group("gloo")
    run = load_run(args.run_dir)
    spec = load_spec(args.run_dir / "spec.yaml")
    rank0 = os.environ.get("RANK", "0") == "0"
    runner = build_runner(spec, run, Console(), resume=args.resume, verbose=args.verbose,
                          progress=rank0, checkpoint=args.checkpoint, launcher="pytorch")
    with quiet_stdout(args.verbose):
        runner.train()


if __name__ == "__main__":
    main()
