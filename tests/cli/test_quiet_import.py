"""Importing Tuneloom's training stack prints no warning about kernels Tuneloom never fetches."""

from __future__ import annotations

import os
import subprocess
import sys


def test_bitsandbytes_hub_kernel_warning_is_silenced():
    code = "import tuneloom, tuneloom.train, bitsandbytes"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=dict(os.environ), timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "gemm_4bit_forward" not in done.stderr + done.stdout
