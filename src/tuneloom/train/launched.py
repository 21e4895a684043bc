"""What each process runs under `accelerate launch` (started by `tuneloom train --processes N`)."""

from __future__ import annotations

import argparse
import sys

from rich.console import Console


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tuneloom.train.launched")
    parser.add_argument("-c", "--config", required=True, help="Project file.")
    parser.add_argument("--task", required=True)
    parser.add_argument("--set", action="append", default=[], dest="overrides")
    args = parser.parse_args(argv)
    from tuneloom.config import load_project
    from tuneloom.errors import TuneloomError
    from tuneloom.train import train_task

    console = Console(stderr=True)
    try:
        train_task(load_project(args.config, args.overrides), args.task, console=console)
    except TuneloomError as exc:
        console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
