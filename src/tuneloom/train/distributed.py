"""Data-parallel training through `accelerate launch`: the launch command, and which process writes.

`tuneloom train --processes N` (or `--launcher accelerate --accelerate-config FILE`) prepares the
dataset once, then runs `accelerate launch ... -m tuneloom.train.launched ...`: every process trains on
its shard of each batch (the global batch is batch_size x processes x grad_accum), and rank 0 alone
writes the run folder, metrics, tracking and the model. Shipped accelerate configs for GPU
clusters (FSDP, DeepSpeed ZeRO-2/3) live in `launch_configs/`.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from importlib.resources import files
from pathlib import Path
from typing import Any

from tuneloom.errors import TuneloomError

LAUNCH_CONFIGS = ("fsdp", "deepspeed-zero2", "deepspeed-zero3")


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main() -> bool:
    """True in a single process and in rank 0 of a launched group."""
    return int(os.environ.get("RANK", "0")) == 0


def shared_run_dir(create: Callable[[], Path]) -> Path:
    """Rank 0 creates the run folder; every rank returns its path."""
    if world_size() == 1:
        return create()
    import torch.distributed as dist
    from accelerate import PartialState

    PartialState()  # joins the process group `accelerate launch` set up (gloo on CPU, nccl on GPUs)
    box: list[Any] = [str(create()) if is_main() else None]
    dist.broadcast_object_list(box, src=0)
    return Path(box[0])


def gather(value: Any) -> list[Any]:
    """`value` from every rank, in rank order (just `[value]` in a single process)."""
    if world_size() == 1:
        return [value]
    from accelerate.utils import gather_object

    return list(gather_object([value]))


def launch_config_path(name_or_path: str) -> Path:
    """A shipped config by name (fsdp, deepspeed-zero2, deepspeed-zero3) or a file path."""
    if name_or_path in LAUNCH_CONFIGS:
        return Path(str(files("tuneloom").joinpath("train", "launch_configs", f"{name_or_path}.yaml")))
    path = Path(name_or_path)
    if not path.is_file():
        raise TuneloomError(
            f"--accelerate-config {name_or_path}: no such file; give an accelerate config file "
            f"(`accelerate config` writes one) or a shipped one: {', '.join(LAUNCH_CONFIGS)}"
        )
    return path


def launch_command(train_args: list[str], processes: int | None, accelerate_config: str | None) -> list[str]:
    """The `accelerate launch` command line that trains in each process (`train_args`: -c, --task, --set)."""
    import torch

    cmd = [sys.executable, "-m", "accelerate.commands.launch"]
    if accelerate_config:
        cmd += ["--config_file", str(launch_config_path(accelerate_config))]
    else:  # no config file: a single machine, defaults spelled out so accelerate asks nothing
        cmd += ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
        # accelerate's --cpu means one process (several only through mpirun); --multi_gpu starts N
        # processes through torch.distributed.run, which on a machine without GPUs join with gloo on CPU.
        cmd += ["--multi_gpu"] if (processes or 1) > 1 else ([] if torch.cuda.is_available() else ["--cpu"])
    if processes:
        cmd += ["--num_processes", str(processes)]
    return [*cmd, "-m", "tuneloom.train.launched", *train_args]


def launch(train_args: list[str], processes: int | None, accelerate_config: str | None) -> None:
    """Run the launched training; raises TuneloomError when any process fails."""
    cmd = launch_command(train_args, processes, accelerate_config)
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", str(_threads_per_process(processes)))}
    code = subprocess.run(cmd, env=env, check=False).returncode
    if code != 0:
        raise TuneloomError(f"accelerate launch exited with code {code}; the messages above say which process failed and why")


def _threads_per_process(processes: int | None) -> int:
    """Split the CPU cores between the processes instead of letting each one take them all."""
    return max(1, (os.cpu_count() or 1) // max(1, processes or 1))
