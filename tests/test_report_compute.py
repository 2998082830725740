"""The KD-gain arithmetic, seed statistics, warnings and the sweep reader, on plain numbers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kdctl.report.compute import gap_closed, stats, summarize, warnings
from kdctl.report.sweeps import read_sweep

METRICS = ("bbox_mAP", "bbox_mAP_50")


def runs(*maps: float) -> list[dict[str, float]]:
    return [{"val/bbox_mAP": m, "val/bbox_mAP_50": 2 * m} for m in maps]


def test_gap_closed_arithmetic() -> None:
    assert gap_closed(0.40, 0.30, 0.35) == pytest.approx(0.5)
    assert gap_closed(0.40, 0.30, 0.30) == pytest.approx(0.0)
    assert gap_closed(0.40, 0.30, 0.45) == pytest.approx(1.5)
    assert gap_closed(0.40, 0.30, 0.25) == pytest.approx(-0.5)
    assert gap_closed(0.30, 0.30, 0.35) is None  # no gap: undefined
    assert gap_closed(0.20, 0.30, 0.35) is None  # teacher weaker: undefined
    assert gap_closed(None, 0.30, 0.35) is None


def test_one_seed_gain_and_unknown_spread() -> None:
    s = summarize({"teacher": runs(0.40), "student": runs(0.30), "distill": runs(0.36)},
                  METRICS)
    row = s["kd_gain"]["bbox_mAP"]
    assert row["gain"] == pytest.approx(0.06)
    assert row["gap_closed"] == pytest.approx(0.6)
    assert s["kd_gain"]["bbox_mAP_50"]["gap_closed"] == pytest.approx(0.6)
    assert row["spread"] is None and row["within_spread"] is None
    assert "spread is unknown" in s["verdict"] and "+0.060" in s["verdict"]
    assert s["warnings"] == []


def test_seeds_mean_std_and_gain_within_spread() -> None:
    s = summarize({"teacher": runs(0.40), "student": runs(0.30, 0.32, 0.28),
                   "distill": runs(0.31, 0.33, 0.29)}, METRICS)
    student = s["groups"]["student"]["bbox_mAP"]
    assert student["mean"] == pytest.approx(0.30) and student["n"] == 3
    assert student["std"] == pytest.approx(0.02)  # sample std of 0.28, 0.30, 0.32
    row = s["kd_gain"]["bbox_mAP"]
    assert row["gain"] == pytest.approx(0.01)
    assert row["spread"] == pytest.approx(0.02)
    assert row["within_spread"] is True
    assert "within the seed spread" in s["verdict"]
    assert "not distinguishable from noise" in s["verdict"]


def test_gain_beyond_spread() -> None:
    s = summarize({"teacher": runs(0.40), "student": runs(0.300, 0.302),
                   "distill": runs(0.350, 0.352)}, METRICS)
    assert s["kd_gain"]["bbox_mAP"]["within_spread"] is False
    assert "exceeds the seed spread" in s["verdict"]


def test_warnings_teacher_weaker_and_student_beats_teacher() -> None:
    weak = summarize({"teacher": runs(0.25), "student": runs(0.30), "distill": runs(0.32)},
                     METRICS)
    assert any("not better than the plain student" in w for w in weak["warnings"])
    assert any("beats its teacher" in w for w in weak["warnings"])
    assert weak["kd_gain"]["bbox_mAP"]["gap_closed"] is None

    beats = warnings({"teacher": {"bbox_mAP": stats([0.40])},
                      "student": {"bbox_mAP": stats([0.30])},
                      "distill": {"bbox_mAP": stats([0.42])}})
    assert len(beats) == 1 and "beats its teacher" in beats[0]


def test_missing_values_and_roles() -> None:
    assert stats([None, None])["mean"] is None
    s = summarize({"teacher": runs(0.4), "student": runs(0.3)}, METRICS)
    assert s["kd_gain"] == {}
    assert "no KD gain" in s["verdict"]


@pytest.mark.parametrize("content", [
    [{"params": {"temperature": 2.0, "kd_weight": 0.5}, "best": {"val/bbox_mAP": 0.31}},
     {"params": {"temperature": 4.0, "kd_weight": 1.0}, "best": {"val/bbox_mAP": 0.33}},
     {"note": "a trial without parameters is skipped"}],
    {"metric": {"name": "val/bbox_mAP"},
     "trials": [{"config": {"temperature": 2.0, "kd_weight": 0.5}, "value": 0.31},
                {"config": {"temperature": 4.0, "kd_weight": 1.0}, "value": 0.33}]},
    {"sweep_id": "abc", "metric": "val/bbox_mAP",  # the shape kdctl's sweeps write
     "trials": [{"index": 0, "params": {"temperature": 2.0, "kd_weight": 0.5},
                 "state": "finished", "history": [{"epoch": 1, "val/bbox_mAP": 0.2},
                                                  {"epoch": 2, "val/bbox_mAP": 0.31}]},
                {"index": 1, "params": {"temperature": 4.0, "kd_weight": 1.0},
                 "state": "stopped_early", "history": [{"epoch": 1, "val/bbox_mAP": 0.33}]}]},
])
def test_sweep_reader_is_tolerant(tmp_path: Path, content: object) -> None:
    path = tmp_path / "sweep.json"
    path.write_text(json.dumps(content))
    trials, metric = read_sweep(path)
    assert metric == "val/bbox_mAP"
    assert [t["metric"] for t in trials] == [0.31, 0.33]
    assert trials[1]["params"] == {"temperature": 4.0, "kd_weight": 1.0}


def test_sweep_reader_survives_garbage(tmp_path: Path) -> None:
    path = tmp_path / "sweep.json"
    path.write_text("{not json")
    assert read_sweep(path) == ([], "val/bbox_mAP")
    path.write_text(json.dumps({"trials": "oops"}))
    assert read_sweep(path)[0] == []


def _fake_run(work_dir: Path, name: str, role: str, seed: int, state: str = "finished"
              ) -> Path:
    from kdctl.runs import RunInfo

    run_dir = work_dir / name
    run_dir.mkdir(parents=True)
    (run_dir / "epoch_1.pth").write_bytes(b"")
    RunInfo(role=role, model="m", code=name[-5:], run_dir=str(run_dir), spec_name="t",
            state=state, seed=seed).save()
    return run_dir


def test_collect_groups_runs_by_role_and_seed(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from kdctl.evaluate import collect

    for i, (role, seed) in enumerate([("student", 0), ("student", 1), ("student", 1),
                                      ("distill", 0), ("distill", 1), ("teacher", 0)]):
        _fake_run(tmp_path, f"2026010{i}_run{i:02d}", role, seed)
    _fake_run(tmp_path, "20260109_fail9", "distill", 2, state="failed")
    spec = SimpleNamespace(runtime=SimpleNamespace(work_dir=str(tmp_path)))

    newest = collect(spec, None)
    assert {r: [t.run.code for t in ts] for r, ts in newest.items()} == {
        "teacher": ["run05"], "student": ["run02"], "distill": ["run04"]}
    seeds = collect(spec, None, seeds=True)
    assert [t.run.seed for t in seeds["student"]] == [0, 1]
    assert seeds["student"][1].run.code == "run02"  # the newest run of seed 1
    assert [t.run.seed for t in seeds["distill"]] == [0, 1]  # the failed run is left out

    given = collect(spec, [tmp_path / "20260100_run00" / "epoch_1.pth",
                           tmp_path / "20260101_run01"])
    assert [t.run.seed for t in given["student"]] == [0, 1]
