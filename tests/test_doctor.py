"""`kdctl doctor` names each stack conflict and its fix instead of an import traceback."""

from __future__ import annotations

from kdctl.doctor import diagnose

GOOD = {"torch": "2.13.0+cpu", "numpy": "1.26.4", "mmcv": "2.1.0", "mmengine": "0.10.7",
        "mmdet": "3.3.0"}
RECORD = {"torch": "2.13.0", "numpy": "1.x", "mmcv": "2.1.0"}


def test_healthy_stack_has_no_findings() -> None:
    assert diagnose(GOOD, RECORD) == []


def test_numpy_2_beside_mmcv_built_for_numpy_1() -> None:
    [finding] = diagnose({**GOOD, "numpy": "2.1.3"}, RECORD)
    assert finding.name == "numpy"
    assert "numpy 2.1.3 beside mmcv 2.1.0, whose ops were built for numpy 1.x" in str(finding)
    assert "pip install 'numpy<2'" in str(finding)


def test_mmcv_2_2_beside_mmdet_3_3() -> None:
    [finding] = diagnose({**GOOD, "mmcv": "2.2.0"}, RECORD)
    assert "mmcv 2.2.0 beside mmdet 3.3.0, which needs mmcv >= 2.0.0rc4 and < 2.2.0" in str(
        finding)
    assert "scripts/setup.sh" in finding.fix


def test_torch_other_than_mmcv_was_built_for() -> None:
    [finding] = diagnose({**GOOD, "torch": "2.14.1"}, RECORD)
    assert "torch 2.14.1 but mmcv's ops were built against torch 2.13.0" in str(finding)
    assert "pip install torch==2.13.0" in finding.fix


def test_import_error_is_explained() -> None:
    error = "ImportError: mmcv/_ext.cpython-311.so: undefined symbol: _ZN3c10"
    [finding] = diagnose(GOOD, RECORD, import_error=error)
    assert "compiled ops fail to load" in finding.problem and "rebuild mmcv" in finding.fix


def test_missing_package() -> None:
    findings = diagnose({**GOOD, "mmdet": None}, RECORD)
    assert [str(f) for f in findings] == ["mmdet: not installed; fix: bash scripts/setup.sh"]
