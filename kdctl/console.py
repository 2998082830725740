"""User-facing output: one rich console, error display and the logger set up once."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterable, Sequence
from typing import Any

from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape
from rich.table import Table

from kdctl.errors import KdctlError, SpecError

console = Console()
err_console = Console(stderr=True)


def setup_logging(verbose: bool) -> None:
    if not verbose:  # deprecation chatter from mmengine/mmdet internals; --verbose shows it
        for module in ("mmengine", "mmdet", "mmcv", "torch", "kdctl.hooks"):
            warnings.filterwarnings("ignore", category=UserWarning, module=module)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO, format="%(message)s",
        handlers=[RichHandler(console=err_console, show_path=verbose)], force=True)


def print_error(exc: KdctlError) -> None:
    if isinstance(exc, SpecError):
        err_console.print(f"[bold red]error:[/] {exc.source} has {len(exc.problems)} "
                          "problem(s):")
        for problem in exc.problems:
            err_console.print(f"  [red]-[/] {escape(problem)}", highlight=False, soft_wrap=True)
    else:
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False,
                          soft_wrap=True)


def table(title: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> Table:
    t = Table(title=title, title_justify="left")
    for i, col in enumerate(columns):
        t.add_column(col, justify="left" if i == 0 else "right")
    for row in rows:
        t.add_row(*(fmt(v) for v in row))
    return t


def fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)
