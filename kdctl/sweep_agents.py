"""Sweep agents: loops that claim a trial in the store, run it, and claim the next.

One agent runs in the `kdctl sweep` process; `--agents K` starts K agent processes
(spawned, one GPU each where there are GPUs, round robin) that share the store through its
lock and write their output to `agent-<k>.log` in the sweep folder.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console

from kdctl.errors import KdctlError
from kdctl.spec import Spec, parse_spec
from kdctl.sweep_config import SWEEPABLE
from kdctl.sweep_store import SweepRecord, SweepStore, Trial, best_trial

log = logging.getLogger(__name__)


def sweep_done(record: SweepRecord) -> str | None:
    """Why the sweep takes no more trials (run_cap, metric target), or None."""
    cap = record.config.get("run_cap")
    if cap and len(record.trials) >= cap:
        return f"run_cap {cap} reached"
    target = record.config["metric"].get("target")
    best = best_trial(record)
    if target is not None and best is not None and best.best(record.metric) >= target:
        return f"trial {best.index} reached the metric target {target}"
    return None


def claim_trial(store: SweepStore, params: dict[str, Any] | None = None) -> int | None:
    """Add the next trial (values from the engine unless given) and return its index; None
    when the sweep is complete. Proposing under the lock lets the engine see every trial
    other agents have claimed."""
    from kdctl.sweep_engine import propose  # noqa: PLC0415

    with store.edit() as record:
        done = sweep_done(record) if params is None else None
        if params is None and not done:
            params = propose(record.config, record.trials, record.seed)
            done = None if params is not None else "the grid is exhausted"
        if done:
            log.info("no more trials: %s", done)
            return None
        trial = Trial(index=len(record.trials), params=params)
        record.trials.append(trial)
    log.info("trial %d: %s", trial.index, params)
    return trial.index


def local_agent(spec: Spec, store: SweepStore, count: int, parent_pid: int | None = None,
                verbose: bool = False) -> int:
    """Claim and run up to `count` trials; return how many ran."""
    from kdctl.sweep_trial import run_trial  # noqa: PLC0415

    ran = 0
    for _ in range(count):
        index = claim_trial(store)
        if index is None:
            break
        run_trial(spec, store, index, Console(quiet=True), early_stop=True,
                  parent_pid=parent_pid, verbose=verbose)
        ran += 1
    return ran


def wandb_agent(spec: Spec, store: SweepStore, count: int, parent_pid: int | None = None,
                verbose: bool = False) -> None:
    """`wandb.agent` with kdctl's trial: the server proposes values and stops trials
    (hyperband); the store mirrors each trial for the table and sweep.json."""
    import wandb  # noqa: PLC0415

    from kdctl.sweep_trial import run_trial  # noqa: PLC0415

    def trial() -> None:
        index = claim_trial(store, wandb_params())
        run_trial(spec, store, index, Console(quiet=True), early_stop=False,
                  parent_pid=parent_pid, verbose=verbose)

    wandb.agent(store.read().sweep_id, function=trial, count=count,
                project=spec.tracking.project, entity=spec.tracking.entity)


def wandb_params() -> dict[str, Any]:
    """The values `wandb.agent` wrote for the current run (`{name: {value: v}}`)."""
    path = os.environ.get("WANDB_SWEEP_PARAM_PATH")
    if not path or not Path(path).is_file():
        raise KdctlError("wandb.agent gave this trial no parameter file "
                         "(WANDB_SWEEP_PARAM_PATH); is wandb 0.31 installed?", field="sweep")
    data = yaml.safe_load(Path(path).read_text()) or {}
    return {k: v["value"] for k, v in data.items() if k in SWEEPABLE}


# ---------------------------------------------------------------------------------------
# several agent processes


def agent_devices(spec: Spec, agents: int) -> list[str | None]:
    """CUDA_VISIBLE_DEVICES for each agent: GPUs round robin, or None on CPU."""
    if spec.runtime.device == "cpu":
        return [None] * agents
    import torch  # noqa: PLC0415

    n = torch.cuda.device_count()
    return [str(k % n) for k in range(agents)] if n else [None] * agents


def spawn_agents(spec: Spec, store: SweepStore, count: int, agents: int, backend: str,
                 verbose: bool) -> None:
    """Split `count` trials over `agents` processes and wait for all of them."""
    quotas = [count // agents + (k < count % agents) for k in range(agents)]
    ctx = multiprocessing.get_context("spawn")
    procs = []
    for k, (quota, device) in enumerate(zip(quotas, agent_devices(spec, agents))):
        if quota == 0:
            continue
        log_file = store.folder / f"agent-{k}.log"
        args = (spec.model_dump(mode="json"), str(store.folder), quota, backend,
                os.getpid(), verbose, str(log_file))
        proc = ctx.Process(target=agent_main, args=args, name=f"kdctl-agent-{k}")
        with _agent_env(device, agents):  # a spawned child inherits the environment
            proc.start()
        procs.append((proc, log_file))
    try:
        for proc, _ in procs:
            proc.join()
    finally:
        for proc, _ in procs:  # on Ctrl-C the agents got SIGINT too; give them a moment
            proc.join(timeout=30)
            if proc.is_alive():
                proc.terminate()
    failed = [str(log_file) for proc, log_file in procs if proc.exitcode]
    if failed:
        raise KdctlError(f"{len(failed)} of {len(procs)} agents ended with an error; see "
                         f"{', '.join(failed)}", field="--agents")


@contextlib.contextmanager
def _agent_env(device: str | None, agents: int):  # noqa: ANN202
    """One GPU per agent; on CPU, the cores shared out, since K agents each running torch
    with every core's worth of threads slow each other down many times over."""
    if device is None:
        name, value = "OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // agents))
    else:
        name, value = "CUDA_VISIBLE_DEVICES", device
    before = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(name)
        else:
            os.environ[name] = before


def agent_main(spec_json: dict[str, Any], folder: str, count: int, backend: str,
               parent_pid: int, verbose: bool, log_file: str) -> None:
    """Entry point of an agent process; its output goes to `log_file`."""
    from kdctl.console import setup_logging  # noqa: PLC0415

    with open(log_file, "a") as out, contextlib.redirect_stdout(out), \
            contextlib.redirect_stderr(out):
        setup_logging(verbose)
        spec = parse_spec(spec_json, Path("."), source="sweep agent")
        agent = local_agent if backend == "local" else wandb_agent
        agent(spec, SweepStore(Path(folder)), count, parent_pid=parent_pid, verbose=verbose)
