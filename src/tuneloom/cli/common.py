"""What every command shares: the consoles, the common options, project loading and the one error printer.

Nothing here imports torch, transformers or MLflow: `tuneloom --help` must answer at once.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich.console import Console

from tuneloom.errors import TuneloomError

if TYPE_CHECKING:
    from tuneloom.config import Project

out = Console()
err = Console(stderr=True)
if not out.is_terminal:  # logs and pipes: keep tables one line per row instead of 80-column wrapping
    out = Console(width=140)

DEFAULT_CONFIG = Path("tuneloom.yaml")


def config_option(help_text: str = "Project file or its folder.") -> Any:
    """The `--config/-c` option, with a help text naming what the command uses the project for."""
    return typer.Option("--config", "-c", help=help_text)


ConfigOpt = Annotated[Path, config_option()]
TaskOpt = Annotated[str | None, typer.Option("--task", "-t", help="Task name (default: every task).")]
SetOpt = Annotated[list[str] | None, typer.Option("--set", help="Override a setting: train.lr=1e-4 or TASK:train.epochs=2.")]
RunArg = Annotated[str, typer.Argument(help="Run id, run folder, 'latest' or 'latest:TASK'.")]


def fail(exc: BaseException) -> NoReturn:
    """Print a user error as one red line (no traceback) and exit with code 2."""
    err.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
    raise typer.Exit(2) from None


@contextmanager
def user_errors(*also: type[BaseException]) -> Iterator[None]:
    """Turn a `TuneloomError` (and the exception types in `also`) raised inside the block into `fail`."""
    caught: tuple[type[BaseException], ...] = (TuneloomError, *also)
    try:
        yield
    except caught as exc:
        fail(exc)


def load(config: Path, overrides: list[str] | None = None) -> Project:
    """The project file (or the folder holding it) with `--set` overrides applied."""
    from tuneloom.config import load_project

    return load_project(config, overrides)


def project_file_exists(config: Path) -> bool:
    """Whether `--config` names a project file, or a folder holding `tuneloom.yaml`."""
    return (config / "tuneloom.yaml").is_file() if config.is_dir() else config.is_file()


def quiet_libraries() -> None:
    """Library chatter (weight-loading bars, deprecation notices) hides our own progress bars."""
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module="torch")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
