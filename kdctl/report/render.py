"""Write the report as report.json (every number), report.md (tables and image links)
and report.html (one self-contained file: plots embedded as base64 data URIs)."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import jinja2
import yaml

from kdctl.io import atomic_write_json, atomic_write_text
from kdctl.render import TEMPLATE_DIR
from kdctl.report.tables import all_tables


def _environment(html: bool) -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)), autoescape=html,
        undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
        keep_trailing_newline=True)


def _plots(report: dict[str, Any], report_dir: Path, embed: bool) -> list[dict[str, str]]:
    plots = []
    for title, rel in report["plots"].items():
        entry = {"title": title, "path": rel}
        if embed:
            entry["base64"] = base64.b64encode((report_dir / rel).read_bytes()).decode()
        plots.append(entry)
    return plots


def render_markdown(report: dict[str, Any], report_dir: Path) -> str:
    return _environment(html=False).get_template("report.md.j2").render(
        r=report, tables=all_tables(report), plots=_plots(report, report_dir, embed=False))


def render_html(report: dict[str, Any], report_dir: Path, extra_head: str = "") -> str:
    """`extra_head` is raw HTML for <head> (a test adds a script that counts images)."""
    return _environment(html=True).get_template("report.html.j2").render(
        r=report, tables=all_tables(report), plots=_plots(report, report_dir, embed=True),
        spec_yaml=yaml.safe_dump(report["spec"], sort_keys=False), extra_head=extra_head)


def write_documents(report: dict[str, Any], report_dir: Path) -> dict[str, Path]:
    paths = {"json": report_dir / "report.json", "md": report_dir / "report.md",
             "html": report_dir / "report.html"}
    atomic_write_json(paths["json"], report)
    atomic_write_text(paths["md"], render_markdown(report, report_dir))
    atomic_write_text(paths["html"], render_html(report, report_dir))
    return paths
