"""Sweeps: the sweep section's checks, the engine's proposals and hyperband stops, a real
local sweep on tiny data, and resume after a kill."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope
from rich.console import Console

from kdctl.errors import KdctlError, SpecError
from kdctl.render import render_config
from kdctl.spec import load_spec
from kdctl.sweep_engine import propose, stop_decision
from kdctl.sweep_store import SweepStore, Trial
from tests.conftest import tiny_spec_dict, write_spec

METRIC = "val/bbox_mAP_50"
HYPERBAND = dict(type="hyperband", eta=2, min_iter=1)


def sweep_section(method: str = "bayes", **extra: Any) -> dict[str, Any]:
    return dict(method=method, metric=dict(name=METRIC, goal="maximize"),
                parameters=dict(lr=dict(min=0.0001, max=0.003),
                                weight_decay=dict(min=0.0001, max=0.01)), **extra)


def _spec(tiny_data: Path, tmp_path: Path, sweep: dict[str, Any], epochs: int = 2) -> Path:
    d = tiny_spec_dict(tiny_data, tmp_path / "work", sweep=sweep, data=dict(image_size=[64, 64]),
                       schedule=dict(epochs=epochs, teacher_epochs=1, batch_size=4))
    return write_spec(tmp_path / "kdctl.yaml", d)


@pytest.fixture(scope="module")
def teacher_ckpt(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A teacher checkpoint of the tiny spec (random weights: trials only need a teacher)."""
    import kdctl.models  # noqa: F401  (registers the modules)
    from mmdet.registry import MODELS

    tmp = tmp_path_factory.mktemp("teacher")
    spec = load_spec(write_spec(tmp / "k.yaml", tiny_spec_dict(tiny_data, tmp)))
    (tmp / "teacher.py").write_text(render_config(spec, "teacher"))
    torch.manual_seed(0)
    with DefaultScope.overwrite_default_scope("mmdet"):
        teacher = MODELS.build(Config.fromfile(str(tmp / "teacher.py")).model)
    ckpt = tmp / "teacher.pth"
    torch.save({"state_dict": teacher.state_dict(), "meta": {}}, ckpt)
    return ckpt


def _trial(index: int, values: list[float], state: str = "finished", **params: Any) -> Trial:
    return Trial(index=index, params=params or {"lr": 0.001, "weight_decay": 0.001},
                 state=state, epochs_run=len(values),
                 history=[{"epoch": i + 1, METRIC: v} for i, v in enumerate(values)])


# ---------------------------------------------------------------------------------------
# the sweep section


def test_sweep_section_errors_name_the_field(tiny_data: Path, tmp_path: Path) -> None:
    sweep = dict(method="hyperopt", metric=dict(name="val/mAP", goal="minimize"), run_cap=0,
                 program="train.py", early_terminate=dict(type="hyperband", min_iter=8),
                 parameters=dict(lr=dict(min=0.01, max=0.001), dropout=dict(min=0, max=1),
                                 momentum=dict(min=0.5, max=1.5),
                                 temperature=dict(values=[2.0, -1.0]),
                                 epochs=dict(min=1.5, max=3.0)))
    with pytest.raises(SpecError) as info:
        load_spec(_spec(tiny_data, tmp_path, sweep))
    text = "\n".join(info.value.problems)
    assert "sweep.method: unknown method (got 'hyperopt'); use one of grid, random, bayes" in text
    assert "sweep.parameters.lr: min must be below max (got min=0.01, max=0.001)" in text
    assert "sweep.parameters.dropout: maps to nothing in the spec; sweepable" in text
    assert f"sweep.metric.name: kdctl never logs 'val/mAP'; use one of val/bbox_mAP, {METRIC}" \
        in text
    assert "sweep.metric.goal: minimize would search for the worst" in text
    assert "sweep.run_cap: 0 is less than or equal to the minimum of 0" in text  # the schema
    assert "sweep.program: not used by kdctl" in text
    assert "sweep.parameters.momentum.max: 1.5 is not a valid optimizer.momentum" in text
    assert "narrow the range" in text
    assert "sweep.parameters.temperature.values[1]: -1.0 is not a valid distill.temperature" \
           in text
    assert "remove or replace that value" in text
    assert "sweep.parameters.epochs: schedule.epochs takes whole numbers" in text
    assert "sweep.early_terminate: hyperband first compares trials after 8 validations, but " \
           "a trial validates only 3 times" in text


def test_a_valid_sweep_section_loads(tiny_data: Path, tmp_path: Path) -> None:
    reference = sweep_section(early_terminate=dict(type="hyperband", s=3, eta=2, min_iter=8))
    spec = load_spec(_spec(tiny_data, tmp_path, reference, epochs=12))
    assert spec.sweep == reference


# ---------------------------------------------------------------------------------------
# the engine: proposals and hyperband


def test_proposals_follow_the_config_and_repeat_with_the_seed() -> None:
    config = sweep_section("bayes")
    config["parameters"]["lr"] = dict(distribution="log_uniform_values", min=1e-4, max=3e-3)
    config["parameters"]["epochs"] = dict(values=[1, 2])
    history = [_trial(0, [0.2], lr=0.001, weight_decay=0.001, epochs=1),
               _trial(1, [0.4], lr=0.002, weight_decay=0.005, epochs=2)]
    proposals = [propose(config, history, sweep_seed=7) for _ in range(2)]
    assert proposals[0] == proposals[1]  # same seed and history: same values
    assert propose(config, history, sweep_seed=8) != proposals[0]
    for method in ("random", "bayes"):
        config["method"] = method
        for n in range(4):
            p = propose(config, history[:n % 3], sweep_seed=n)
            assert 1e-4 <= p["lr"] <= 3e-3 and 1e-4 <= p["weight_decay"] <= 0.01
            assert p["epochs"] in (1, 2) and isinstance(p["lr"], float)

    grid = dict(method="grid", metric=dict(name=METRIC, goal="maximize"),
                parameters=dict(temperature=dict(values=[1.0, 4.0])))
    seen = [propose(grid, [], 0)]
    seen.append(propose(grid, [_trial(0, [0.1], temperature=seen[0]["temperature"])], 0))
    assert sorted(p["temperature"] for p in seen) == [1.0, 4.0]
    done = [_trial(i, [0.1], temperature=p["temperature"]) for i, p in enumerate(seen)]
    assert propose(grid, done, 0) is None


def test_hyperband_stops_a_worse_trial_at_a_band() -> None:
    config = sweep_section(early_terminate=dict(type="hyperband", eta=2, min_iter=2))
    trials = [_trial(0, [0.30, 0.50, 0.60]), _trial(1, [0.20, 0.40, 0.45]),
              _trial(2, [0.05, 0.10], "running"), _trial(3, [0.05, 0.70], "running"),
              _trial(4, [0.01], "running")]
    stop, reason = stop_decision(config, trials, 2)
    assert stop
    assert reason.startswith(f"{METRIC} 0.1000 at validation 2 < 0.4000, the band-2 threshold")
    assert stop_decision(config, trials, 3) == (False, None)  # better than the threshold
    assert stop_decision(config, trials, 4) == (False, None)  # no band reached yet

    reference = sweep_section(early_terminate=dict(type="hyperband", s=3, eta=2, min_iter=8))
    early = [_trial(0, [0.5] * 7), _trial(1, [0.4] * 7), _trial(2, [0.0] * 7, "running")]
    assert not stop_decision(reference, early, 2)[0]  # the first band is validation 8
    early[2].history.append({"epoch": 8, METRIC: 0.0})
    for t in early[:2]:
        t.history.append({"epoch": 8, METRIC: t.history[-1][METRIC]})
    assert stop_decision(reference, early, 2)[0]


def test_interrupted_trials_are_marked_failed(tmp_path: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    store = SweepStore(tmp_path)
    (tmp_path / "store.json").write_text(json.dumps(dict(
        sweep_id="abc", backend="local", config=sweep_section(), spec={}, teacher_ckpt="t",
        teacher_sha256="0", seed=0, created="now", version=1,
        trials=[vars(_trial(0, [0.3])), vars(_trial(1, [0.1], "running")) | {"pid": dead.pid},
                vars(_trial(2, [], "running"))])))  # pid: this process, alive
    assert store.mark_interrupted() == [1]
    states = [t.state for t in store.read().trials]
    assert states == ["finished", "failed", "running"]
    assert store.read().trials[1].error.startswith("interrupted")


# ---------------------------------------------------------------------------------------
# backends


def test_wandb_backend_without_a_key_says_to_use_local(
        tiny_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from kdctl.sweep import resolve_backend

    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc
    spec = load_spec(_spec(tiny_data, tmp_path, sweep_section()))
    with pytest.raises(KdctlError) as info:
        resolve_backend(spec, "wandb")
    assert str(info.value).startswith("--backend: the wandb backend runs the sweep on the W&B")
    assert "kdctl sweep --backend local" in str(info.value)
    assert resolve_backend(spec, None) == "local"


def test_local_sweep_stops_a_worse_trial_and_keeps_its_checkpoint(
        tiny_data: Path, tmp_path: Path, teacher_ckpt: Path) -> None:
    """A real trial of 2 epochs after two recorded ones that scored high: hyperband
    (min_iter 1) stops it after its first validation. (The kill test runs full trials.)"""
    from kdctl.evaluate import latest_runs
    from kdctl.sweep import open_or_create, run_sweep

    spec = load_spec(_spec(tiny_data, tmp_path, sweep_section(early_terminate=HYPERBAND)))
    store = open_or_create(spec, str(teacher_ckpt), "local", None)
    with store.edit() as record:
        record.trials += [_trial(0, [0.9, 0.9]), _trial(1, [0.8, 0.8])]
    out = StringIO()
    outcome = run_sweep(spec, Path("kdctl.yaml"), count=1, backend="local",
                        resume=store.read().sweep_id, teacher=str(teacher_ckpt),
                        console=Console(file=out, width=200))

    trials = outcome.record.trials
    assert len(trials) == 3
    first = trials[2]
    assert first.state == "stopped_early" and first.epochs_run == 1, first
    assert "at validation 1 < 0.8000" in first.stop_reason
    run_dir = Path(first.run_dir)
    run = json.loads((run_dir / "run.json").read_text())
    assert run["state"] == "stopped_early" and run["sweep_id"] == record.sweep_id
    assert (run_dir / "epoch_1.pth").is_file() and not (run_dir / "epoch_2.pth").exists()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert [r["epoch"] for r in metrics["val"]] == [1]
    assert 1e-4 <= first.params["lr"] <= 3e-3 and first.run_name.startswith("atss-resnet18-kd_")

    text = out.getvalue()
    assert "1 trial now on 1 agent, 2 before -> 3 trials in total" in text
    assert "hyperband stopped" in text and "best trial 0" in text and "kdctl distill" in text
    rows = (store.folder / "sweep.csv").read_text().splitlines()
    assert len(rows) == 4 and rows[0].startswith("trial,run,state,epochs_run,stopped_early")
    assert json.loads((store.folder / "sweep.json").read_text())["best"]["index"] == 0
    assert not latest_runs(spec)  # sweep trials are not picked for `kdctl eval`


def test_resume_after_kill_neither_loses_nor_repeats(
        tiny_data: Path, tmp_path: Path, teacher_ckpt: Path) -> None:
    spec_file = _spec(tiny_data, tmp_path, sweep_section("random"), epochs=1)
    work = tmp_path / "work"
    args = [sys.executable, "-m", "kdctl.cli", "sweep", "--spec", str(spec_file),
            "--backend", "local", "--teacher", str(teacher_ckpt)]
    env = {**os.environ, "WANDB_MODE": "disabled"}
    proc = subprocess.Popen([*args, "--count", "3"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    store_file = _wait_for_finished_trial(work, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()

    before = json.loads(store_file.read_text())["trials"]
    sweep_id = store_file.parent.name
    done = subprocess.run([*args, "--count", "1", "--resume", sweep_id], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]

    after = json.loads(store_file.read_text())["trials"]
    finished_before = [t for t in before if t["state"] == "finished"]
    assert finished_before and all(t in after for t in finished_before)  # kept unchanged
    assert len(after) == len(before) + 1 and after[-1]["state"] == "finished"
    for t in after[len(finished_before):-1]:  # claimed or running at the kill
        assert t["state"] == "failed" and t["error"].startswith("interrupted")
    run_dirs = [t["run_dir"] for t in after if t["run_dir"]]
    assert len(set(run_dirs)) == len(run_dirs)
    runs = [json.loads(p.read_text()) for p in work.glob("*/run.json")]
    assert len(runs) == len(run_dirs)  # a folder made just before the kill is found too
    assert {r["state"] for r in runs} <= {"finished", "failed"}
    assert len({json.dumps(t["params"]) for t in after}) == len(after)  # nothing repeated


def _wait_for_finished_trial(work: Path, proc: subprocess.Popen, timeout: float = 150
                             ) -> Path:
    deadline = time.time() + timeout
    while time.time() < deadline:
        for store_file in work.glob("sweeps/*/store.json"):
            try:
                trials = json.loads(store_file.read_text())["trials"]
            except (OSError, ValueError):
                continue
            if any(t["state"] == "finished" for t in trials):
                return store_file
        if proc.poll() is not None:
            pytest.fail(f"kdctl sweep ended early: {proc.stderr.read().decode()[-2000:]}")
        time.sleep(0.2)
    proc.kill()
    pytest.fail("no trial finished in time")



def test_agents_in_several_processes_share_the_store(tmp_path: Path) -> None:
    store = SweepStore(tmp_path)
    (tmp_path / "store.json").write_text(json.dumps(dict(
        sweep_id="abc", backend="local", config=sweep_section("random"), spec={},
        teacher_ckpt="t", teacher_sha256="0", seed=0, created="now", version=1, trials=[])))
    claim = ("import sys; from pathlib import Path; from kdctl.sweep_agents import claim_trial;"
             " from kdctl.sweep_store import SweepStore; store = SweepStore(Path(sys.argv[1]));"
             " [claim_trial(store) for _ in range(6)]")
    procs = [subprocess.Popen([sys.executable, "-c", claim, str(tmp_path)]) for _ in range(3)]
    assert [p.wait(timeout=60) for p in procs] == [0, 0, 0]
    trials = store.read().trials
    assert [t.index for t in trials] == list(range(18))  # no claim lost or doubled
    assert len({t.params["lr"] for t in trials}) == 18
