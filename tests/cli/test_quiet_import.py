"""Importing Tuneloom is quiet and cheap: no warning about kernels it never fetches, and the CLI
starts (`--help`, `config check`) without torch, transformers, MLflow or pandas."""

from __future__ import annotations

import json
import os
import subprocess
import sys

HEAVY = ("torch", "transformers", "mlflow", "peft", "pandas")


def _python(code: str) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=dict(os.environ), timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return done


def _heavy_after(code: str) -> list[str]:
    done = _python(f"{code}\nimport json, sys; print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))")
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_bitsandbytes_hub_kernel_warning_is_silenced():
    done = _python("import tuneloom, tuneloom.train, bitsandbytes")
    assert "gemm_4bit_forward" not in done.stderr + done.stdout


def test_importing_the_cli_and_its_help_load_no_heavy_library():
    assert _heavy_after("import tuneloom.cli") == []
    assert _heavy_after("import tuneloom; tuneloom.load_project") == []
    help_code = "from tuneloom.cli import app\ntry:\n    app(['--help'])\nexcept SystemExit:\n    pass"
    assert _heavy_after(help_code) == []


def test_config_check_loads_neither_torch_nor_mlflow(data_project_dir):
    code = f"from tuneloom.cli import app\ntry:\n    app(['config', 'check', {str(data_project_dir)!r}])\nexcept SystemExit:\n    pass"
    assert set(_heavy_after(code)) <= {"pandas"}  # pandas reads the CSV source
