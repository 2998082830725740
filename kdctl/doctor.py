"""`kdctl doctor`: find version conflicts in the stack before they become import tracebacks.

mmcv's C++ ops are compiled against one torch and one numpy ABI; mmdet 3.3 accepts only
mmcv >= 2.0.0rc4 and < 2.2.0. scripts/setup.sh records what mmcv was built against in
`.venv/kdctl-build.json`; versions are read from package metadata, without importing.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from kdctl.errors import SpecError

PACKAGES = ("torch", "numpy", "mmcv", "mmengine", "mmdet")
BUILD_RECORD = Path(sys.prefix) / "kdctl-build.json"
SETUP = "bash scripts/setup.sh"


@dataclass
class Finding:
    name: str
    problem: str
    fix: str

    def __str__(self) -> str:
        return f"{self.name}: {self.problem}; fix: {self.fix}"


def installed_versions(packages: Sequence[str] = PACKAGES) -> dict[str, str | None]:
    """Installed versions from package metadata (None when absent), without importing."""
    versions: dict[str, str | None] = {}
    for name in packages:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def build_record() -> dict[str, str]:
    try:
        return json.loads(BUILD_RECORD.read_text())
    except (OSError, ValueError):
        return {}


def _release(version: str) -> tuple[int, ...]:
    """'2.13.0+cpu' -> (2, 13, 0); '2.0.0rc4' -> (2, 0, 0)."""
    parts = []
    for piece in version.split("+")[0].split(".")[:3]:
        digits = "".join(c for c in piece if c.isdigit()) if piece[:1].isdigit() else ""
        parts.append(int(digits.split("rc")[0] or 0) if digits else 0)
    return tuple(parts)


def diagnose(versions: dict[str, str | None], record: dict[str, str],
             import_error: str | None = None) -> list[Finding]:
    """Every conflict found in the given versions, build record and import error."""
    found = [Finding(name, "not installed", SETUP)
             for name in PACKAGES if versions.get(name) is None]
    torch_v, numpy_v, mmcv_v = versions.get("torch"), versions.get("numpy"), versions.get("mmcv")
    mmdet_v, mmengine_v = versions.get("mmdet"), versions.get("mmengine")

    if numpy_v and _release(numpy_v)[0] >= 2 and mmcv_v:
        built = record.get("numpy", "1.x")
        found.append(Finding("numpy", f"numpy {numpy_v} beside mmcv {mmcv_v}, whose ops were "
                             f"built for numpy {built}", "pip install 'numpy<2'"))
    if mmcv_v and mmdet_v and _release(mmdet_v)[0] == 3 and not (
            (2, 0, 0) <= _release(mmcv_v) < (2, 2, 0)):
        found.append(Finding("mmcv", f"mmcv {mmcv_v} beside mmdet {mmdet_v}, which needs "
                             "mmcv >= 2.0.0rc4 and < 2.2.0", f"{SETUP} (installs mmcv 2.1.0)"))
    if mmengine_v and _release(mmengine_v)[:2] != (0, 10):
        found.append(Finding("mmengine", f"mmengine {mmengine_v}; mmdet 3.3 is tested with "
                             "0.10.x", "pip install 'mmengine>=0.10,<0.11'"))
    built_torch = record.get("torch")
    if torch_v and built_torch and _release(torch_v) != _release(built_torch):
        found.append(Finding("torch", f"torch {torch_v} but mmcv's ops were built against torch "
                             f"{built_torch}", f"pip install torch=={built_torch}, or rerun "
                             f"{SETUP} to build mmcv for torch {torch_v}"))
    if import_error:
        found.append(_explain_import_error(import_error, torch_v, built_torch))
    return found


def _explain_import_error(error: str, torch_v: str | None, built: str | None) -> Finding:
    if "undefined symbol" in error or "_ext" in error:
        return Finding("mmcv", f"mmcv's compiled ops fail to load ({error.strip()[:160]}); "
                       f"they were built for another torch than {torch_v}",
                       f"rerun {SETUP} to rebuild mmcv for torch {torch_v}")
    if "numpy" in error.lower():
        return Finding("numpy", f"import fails on numpy ({error.strip()[:160]})",
                       "pip install 'numpy<2'")
    return Finding("import", f"`import mmcv.ops, mmdet.models` fails: {error.strip()[:200]}",
                   SETUP)


def import_check(timeout: float = 120) -> str | None:
    """Import the compiled stack in a child process; return its last error line or None."""
    code = "import mmcv.ops, mmdet.models"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=timeout)
    if out.returncode == 0:
        return None
    lines = [ln for ln in out.stderr.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else f"exit status {out.returncode}"


def require_healthy_environment() -> None:
    """The cheap part of the doctor (metadata only), run before every training."""
    findings = diagnose(installed_versions(), build_record())
    if findings:
        raise SpecError([str(f) for f in findings], source="environment")
