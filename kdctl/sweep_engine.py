"""The local sweep's decisions, made by W&B's open-source engine (PyPI `sweeps`).

`propose` asks `sweeps.next_run` for the next trial's values; `stop_decision` asks
`sweeps.stop_runs` (hyperband) whether a running trial must stop. Both see every trial of
the store as a `SweepRun` whose history has one row per validation, so one hyperband
"iteration" is one validation.

The engine draws from Python's `random` (random search, grid order) and NumPy's global
generator (bayes candidates); both are seeded from the sweep seed and the trial index
for each proposal, then restored, so a sweep run with one agent is reproducible.
"""

from __future__ import annotations

import contextlib
import random
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np

from kdctl.sweep_config import hyperband_bands
from kdctl.sweep_store import Trial

with warnings.catch_warnings():  # the package's pydantic-v1 style config warns on import
    warnings.simplefilter("ignore")
    import sweeps
    from sweeps import RunState, SweepRun

_STATES = {"created": RunState.pending, "running": RunState.running,
           "finished": RunState.finished, "stopped_early": RunState.finished,
           "failed": RunState.crashed}


def engine_runs(trials: list[Trial]) -> list[SweepRun]:
    """Trials as the engine's runs; a trial stopped early is a finished run, as on W&B."""
    return [SweepRun(name=t.name, state=_STATES[t.state], history=t.history,
                     config={k: {"value": v} for k, v in t.params.items()},
                     stopped=t.state == "stopped_early") for t in trials]


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Seed Python's and NumPy's global generators, restoring both afterwards."""
    py_state, np_state = random.getstate(), np.random.get_state()
    random.seed(seed)
    np.random.seed(seed % 2**32)
    try:
        yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)


def proposal_seed(sweep_seed: int, index: int) -> int:
    return (sweep_seed * 1_000_003 + index) % 2**32


def propose(config: dict[str, Any], trials: list[Trial], sweep_seed: int
            ) -> dict[str, Any] | None:
    """The next trial's parameter values, or None when a grid is exhausted."""
    with seeded(proposal_seed(sweep_seed, len(trials))), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn's GP convergence chatter
        run = sweeps.next_run(config, engine_runs(trials), validate=True)
    if run is None:
        return None
    return {name: _plain(v["value"]) for name, v in run.config.items()}


def _plain(value: Any) -> Any:
    """NumPy scalars from the engine as JSON-ready Python numbers."""
    return value.item() if isinstance(value, np.generic) else value


def stop_decision(config: dict[str, Any], trials: list[Trial], index: int
                  ) -> tuple[bool, str | None]:
    """Whether hyperband stops trial `index` now, and the numbers behind a stop."""
    if (config.get("early_terminate") or {}).get("type") != "hyperband":
        return False, None
    name = trials[index].name
    runs = engine_runs(trials)
    stopped = {r.name for r in sweeps.stop_runs(config, runs, validate=True)}
    if name not in stopped:
        return False, None
    return True, _stop_reason(config, trials, index)


def _stop_reason(config: dict[str, Any], trials: list[Trial], index: int) -> str:
    """`val/bbox_mAP_50 0.081 at validation 2 < 0.143, the band-2 threshold (top 1/eta)`."""
    metric = config["metric"]["name"]
    history = [row[metric] for row in trials[index].history if metric in row]
    band = hyperband_bands(config["early_terminate"], len(history))[-1]
    at_band = sorted((row[metric] for t in trials for row in t.history[band - 1:band]
                      if metric in row), reverse=True)
    eta = config["early_terminate"].get("eta", 3)
    threshold = at_band[int(1.0 / eta * len(at_band))]  # the engine's rank
    strict = config["early_terminate"].get("strict", True)
    value = history[band - 1] if strict else max(history)
    return (f"{metric} {value:.4f} at validation {band} < {threshold:.4f}, the band-{band} "
            f"threshold over {len(at_band)} trials (keeps the top 1/{eta})")
