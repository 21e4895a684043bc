"""`tuneloom train --search N`: an Optuna study over a task's `search:` space, minimising validation loss.

Every trial is a normal training run (its own run folder, metrics, tracking) of the task with the
sampled settings applied as overrides. Validation loss is reported to the trial at every evaluation
and Optuna's median pruner stops trials that fall behind. The study lives in `optuna.db` in the
workspace, or at `search.storage` (postgresql://...) so several machines can work on one study.
The search report (best settings, a plot of the trials, parameter importance, parallel
coordinates) goes to `<workspace>/searches/<study>-<time>/`.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from rich.console import Console
from transformers import TrainerCallback

from tuneloom.atomic import write_json_atomic
from tuneloom.config import Project, SearchConfig, TaskConfig, apply_overrides
from tuneloom.data import prepare_dataset
from tuneloom.errors import ProjectFileError, TuneloomError
from tuneloom.reports.training import write_search_report
from tuneloom.workspace import set_status

# Where each searchable setting lives in a task (the `--set` path).
PATHS = {
    "lr": "train.lr",
    "batch_size": "train.batch_size",
    "epochs": "train.epochs",
    "weight_decay": "train.weight_decay",
    "warmup_ratio": "train.warmup_ratio",
    "r": "method.r",
    "dropout": "method.dropout",
}


class TrialRow(BaseModel):
    number: int
    state: str  # COMPLETE | PRUNED | FAIL | RUNNING
    value: float | None
    last_reported: float | None
    params: dict[str, float | int]
    run: str | None
    steps: int | None


class SearchResult(BaseModel):
    task: str
    study: str
    storage: str  # without credentials
    folder: str
    report: str
    new_trials: int
    trials: list[TrialRow]
    best: TrialRow | None


class PruningCallback(TrainerCallback):
    """Reports validation loss to the trial at each evaluation; stops training when Optuna prunes it."""

    def __init__(self, trial: Any) -> None:
        self.trial = trial
        self.pruned_at: int | None = None
        self.last_step = -1

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):  # Trainer callback API
        loss = (metrics or {}).get("eval_loss")
        # the final evaluation after training repeats the last step's: report each step once
        if loss is None or not state.is_world_process_zero or self.pruned_at is not None or state.global_step <= self.last_step:
            return
        self.last_step = state.global_step
        self.trial.report(float(loss), step=state.global_step)
        self.trial.set_user_attr("last_reported", float(loss))
        if self.trial.should_prune():
            self.pruned_at = state.global_step
            control.should_training_stop = True


def study_storage(url: str) -> Any:
    """Optuna's SQL storage for `url` (sqlite:///..., postgresql://...): the same class for one machine or many.

    SQLAlchemy reads a bare `postgresql://` as the psycopg2 driver; where only psycopg 3 is
    installed (as here), the URL names that driver instead.
    """
    import importlib.util

    import optuna

    if url.startswith("postgresql://") and importlib.util.find_spec("psycopg2") is None and importlib.util.find_spec("psycopg"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    return optuna.storages.RDBStorage(url, engine_kwargs=None if url.startswith("sqlite") else {"pool_pre_ping": True})


def _redact(url: str) -> str:
    from tuneloom.registry.uris import redact_uri

    return redact_uri(url)


def suggest(trial: Any, space: SearchConfig) -> dict[str, float | int]:
    """The trial's values for every setting in the search space."""
    out: dict[str, float | int] = {}
    for name in space.params():
        spec = getattr(space, name)
        if isinstance(spec, list):
            out[name] = trial.suggest_categorical(name, spec)
        elif name == "epochs":
            out[name] = trial.suggest_int(name, spec.low, spec.high)
        else:
            out[name] = trial.suggest_float(name, spec.low, spec.high, log=spec.log)
    return out


def trial_overrides(task: TaskConfig, params: dict[str, float | int]) -> list[str]:
    """`--set` style overrides for one task; a searched rank keeps the task's alpha/r ratio."""
    sets = [f"{task.name}:{PATHS[k]}={v}" for k, v in params.items()]
    if "r" in params:
        sets.append(f"{task.name}:method.alpha={task.method.alpha * params['r'] / task.method.r}")
    if "epochs" in params and task.train.max_steps is not None:
        sets.append(f"{task.name}:train.max_steps=null")  # epochs only count without a step limit
    return sets


def search_task(project: Project, task_name: str | None, n_trials: int, console: Console | None = None) -> SearchResult:
    """Run `n_trials` more trials of the task's study and write the search report."""
    import optuna

    from tuneloom.train import train_task

    console = console or Console(stderr=True)
    task = project.config.task(task_name)
    space = task.search
    if space is None:
        raise ProjectFileError(
            f"task '{task.name}' has no search: section; add one to the project file, e.g.\n"
            "    search:\n      lr: {low: 1.0e-5, high: 1.0e-3, log: true}\n      r: [8, 16, 32]"
        )
    if n_trials < 1:
        raise TuneloomError(f"--search {n_trials}: give the number of trials to run (1 or more)")
    dataset_dir = Path(prepare_dataset(project, task.name).path)  # once, shared by every trial
    url = space.storage or f"sqlite:///{project.workspace / 'optuna.db'}"
    project.workspace.mkdir(parents=True, exist_ok=True)
    study_name = space.study or task.name
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.create_study(
            study_name=study_name,
            storage=study_storage(url),
            direction="minimize",
            load_if_exists=True,
            pruner=optuna.pruners.MedianPruner(n_startup_trials=2) if space.pruning else optuna.pruners.NopPruner(),
        )
    except Exception as exc:  # a bad URL, an unreachable server, a missing driver
        raise TuneloomError(f"search storage {_redact(url)}: {type(exc).__name__}: {exc}") from None

    # Reproducible on one machine, without repeating the trials a study already has; machines sharing
    # a study through `storage` draw fresh seeds, or they would all try the same settings.
    study.sampler = optuna.samplers.TPESampler(seed=None if space.storage else task.train.seed + len(study.trials))

    def objective(trial: Any) -> float:
        params = suggest(trial, space)
        console.print(
            f"[bold]trial {trial.number}[/]: "
            + ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())
        )
        trial_project = Project(config=apply_overrides(project.config, trial_overrides(task, params)), path=project.path)
        pruning = PruningCallback(trial)
        result = train_task(trial_project, task.name, dataset_dir, console, callbacks=[pruning])
        trial.set_user_attr("run", Path(result.run_dir).name)
        trial.set_user_attr("steps", result.steps)
        if pruning.pruned_at is not None:
            set_status(Path(result.run_dir), "completed", pruned_at_step=pruning.pruned_at, search=study_name)
            raise optuna.TrialPruned(f"validation loss behind the median at step {pruning.pruned_at}")
        if result.eval_loss is None or not math.isfinite(result.eval_loss):
            raise TuneloomError(f"trial {trial.number}: no finite validation loss ({result.eval_loss})")
        return float(result.eval_loss)

    # Errors stop the search (catch=()): a broken trial is usually a broken setting for every trial.
    study.optimize(objective, n_trials=n_trials, catch=())
    return _write_report(project, task, study, url, n_trials)


def _row(trial: Any) -> TrialRow:
    return TrialRow(
        number=trial.number,
        state=trial.state.name,
        value=trial.value if trial.state.name == "COMPLETE" else None,
        last_reported=trial.user_attrs.get("last_reported"),
        params=dict(trial.params),
        run=trial.user_attrs.get("run"),
        steps=trial.user_attrs.get("steps"),
    )


def _importances(study: Any) -> dict[str, float]:
    """fANOVA importance of each parameter; empty below 3 completed trials or with one parameter."""
    import optuna

    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if len(done) < 3 or len({k for t in done for k in t.params}) < 2:
        return {}
    try:
        return {k: round(float(v), 4) for k, v in optuna.importance.get_param_importances(study).items()}
    except (RuntimeError, ValueError) as exc:  # e.g. every completed trial has the same values
        logging.getLogger(__name__).info("no parameter importance: %s", exc)
        return {}


def _write_report(project: Project, task: TaskConfig, study: Any, url: str, new_trials: int) -> SearchResult:
    trials = [_row(t) for t in study.trials]
    done = [t for t in trials if t.state == "COMPLETE"]
    best = min(done, key=lambda t: t.value) if done else None  # type: ignore[arg-type, return-value]  # COMPLETE trials have a value
    folder = project.workspace / "searches" / f"{study.study_name}-{time.strftime('%Y%m%d-%H%M%S')}"
    data = {
        "task": task.name,
        "study": study.study_name,
        "storage": _redact(url),
        "new_trials": new_trials,
        "params": task.search.params() if task.search else [],
        "paths": PATHS,
        "trials": [t.model_dump() for t in trials],
        "best": best.model_dump() if best else None,
        "importances": _importances(study),
        "best_command": " ".join(
            ["tuneloom train --task", task.name, *(f"--set {o}" for o in trial_overrides(task, best.params))]
        )
        if best
        else None,
    }
    write_json_atomic(folder / "search.json", data)
    report = write_search_report(folder, data)
    return SearchResult(
        task=task.name,
        study=study.study_name,
        storage=data["storage"],
        folder=str(folder),
        report=str(report),
        new_trials=new_trials,
        trials=trials,
        best=best,
    )
