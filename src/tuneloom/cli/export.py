"""`tuneloom export`: a run or registry version as GGUF (llama.cpp, LM Studio) or GGUF + Modelfile (Ollama)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tuneloom.cli.common import DEFAULT_CONFIG, config_option, err, load, out, project_file_exists, user_errors

ExportConfigOpt = Annotated[Path, config_option("Project file or its folder (its workspace holds the registry).")]


def export(
    ref: Annotated[str, typer.Argument(help="Run folder, or registry reference: name, name:VERSION, name@ALIAS.")],
    format: Annotated[str, typer.Option("--format", "-f", help="gguf | ollama (GGUF plus a Modelfile).")] = "gguf",
    quant: Annotated[str, typer.Option("--quant", "-q", help="f16 | q8_0 | q4_0.")] = "q8_0",
    adapter_only: Annotated[
        bool,
        typer.Option("--adapter-only", help="Base GGUF (shared) plus a LoRA adapter GGUF, instead of one merged GGUF."),
    ] = False,
    out_dir: Annotated[Path | None, typer.Option("--out", "-o", help="Output folder (default: <workspace>/exports/...).")] = None,
    config: ExportConfigOpt = DEFAULT_CONFIG,
) -> None:
    """Write a tuned model as GGUF, with its tokenizer, chat template and stop tokens, offline.

    Example: tuneloom export helpdesk-qa@production --format gguf --quant q8_0
    """
    from tuneloom.export import export_model

    with user_errors(FileNotFoundError):
        workspace, registry_uri = None, None
        if project_file_exists(config):
            project = load(config)
            workspace, registry_uri = project.workspace, project.config.registry.uri
        folder, manifest = export_model(
            ref,
            format=format,
            quant=quant,
            adapter_only=adapter_only,
            out_dir=out_dir,
            workspace=workspace,
            registry_uri=registry_uri,
            say=lambda text: err.print(f"[dim]{text}[/]"),
        )
    out.print(f"[green]✓[/] exported {manifest.source} ({manifest.mode}, {manifest.quant}) to {folder}")
    for file in manifest.files:
        out.print(f"  {file.role:9} {file.path}  sha256 {file.sha256[:16]}…  {file.bytes / 2**20:.1f} MiB")
    if manifest.registry_name is not None:
        out.print(f"  recorded on {manifest.registry_name} version {manifest.registry_version}")
