"""The MLflow model registry: register, promote (gated), force, rollback, history, resolve, and the CLI.

One workspace (one SQLite registry) serves the whole module: MLflow's import and its database
set-up are the slow part. Each test uses its own model names, so the tests do not depend on order.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file
from typer.testing import CliRunner

from tests.conftest import CHAT_TASK, CLS_TASK, write_project
from tuneloom.artifacts import (
    DatasetRef,
    EvalResult,
    GateRecord,
    RuleResult,
    RunSnapshot,
    TrainingSummary,
    TrainResult,
    write_eval,
    write_gate,
    write_snapshot,
    write_status,
    write_summary,
)
from tuneloom.cli import app
from tuneloom.config import load_project
from tuneloom.registry import (
    ModelRegistry,
    NotRegistered,
    RegistryError,
    VersionNotFound,
    history,
    list_versions,
    promote,
    register_run,
    resolve,
)
from tuneloom.registry.uris import redact_uri

runner = CliRunner()


def _train_result(run: Path, task_name: str) -> TrainResult:
    return TrainResult(
        task=task_name,
        run_dir=str(run),
        model_dir=str(run / "model"),
        dataset="ds",
        method="lora",
        precision="fp32",
        steps=3,
        epochs=1.0,
        train_loss=1.0,
        eval_loss=None,
        seconds=1.0,
        tokens=10,
        tokens_per_s=10.0,
        trainable_parameters=1,
        total_parameters=2,
        truncated_examples=0,
    )


def make_run(
    ws: Path, project_file: Path, task_name: str, stamp: str, gate: bool | None, seed: int, finished: bool = True
) -> Path:
    """A run folder as train_task + evaluate_run + the gate leave it, with a tiny LoRA adapter."""
    project = load_project(project_file)
    task = project.config.task(task_name)
    run = ws / "runs" / f"{task_name}-{stamp}"
    (run / "model").mkdir(parents=True)
    write_snapshot(
        run,
        RunSnapshot(
            project=project.config.project,
            project_file=str(project.path),
            task=task.model_dump(mode="json"),
            dataset=DatasetRef(path=str(ws / "datasets" / task_name / f"ds{seed}"), version=f"ds{seed}"),
            base_model_path=f"/models/{task.model}",
            precision="fp32",
            versions={"python": "3.11", "torch": "2.13.0"},
        ),
    )
    write_status(run, "completed" if finished else "running")
    if finished:
        write_summary(run, TrainingSummary(train=_train_result(run, task_name)))
    if task.type == "chat_sft":
        tuned = {"loss": 1.5 - seed / 10, "perplexity": 4.0, "rouge_l": 0.3 + seed / 100, "token_f1": 0.4, "exact_match": 0.0}
    else:
        tuned = {
            "accuracy": 0.8,
            "macro_f1": 0.7 + seed / 100,
            "weighted_f1": 0.75,
            "per_class": {"billing": {"f1": 0.7, "support": 3}},
            "confusion": [[1, 0], [0, 1]],
        }
    write_eval(
        run,
        EvalResult(
            task=task_name,
            task_type=task.type,
            run=run.name,
            test_dataset=f"ds{seed}",
            n_examples=2,
            base=tuned,
            tuned=tuned,
            metrics_shown=sorted(tuned),
            comparison={},
        ),
    )
    if gate is not None:
        detail = f"tuned rouge_l {0.31 if gate else 0.21:.4f}, must be at least 0.3000"
        rules = [RuleResult(rule="min rouge_l", value=0.31, limit=0.3, passed=gate, detail=detail)]
        write_gate(run, GateRecord(passed=gate, reference="base", rules=rules))
    (run / "model" / "adapter_config.json").write_text(
        json.dumps(
            {
                "peft_type": "LORA",
                "r": 4,
                "lora_alpha": 8,
                "target_modules": ["q_proj", "v_proj"],
                "base_model_name_or_path": task.model,
            }
        )
    )
    rng = np.random.default_rng(seed)
    save_file(
        {
            "base_model.model.layers.0.q_proj.lora_A.weight": rng.standard_normal((4, 16)).astype(np.float32),
            "base_model.model.layers.0.q_proj.lora_B.weight": rng.standard_normal((16, 4)).astype(np.float32),
        },
        str(run / "model" / "adapter_model.safetensors"),
    )
    return run


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """A project (tuneloom.yaml + workspace) with five run folders and one registry on its workspace."""
    root = tmp_path_factory.mktemp("registry")
    project_file = write_project(root, "smollm2-135m-instruct", "all-minilm-l6-v2")
    ws = root / "workspace"
    runs = {
        "a": make_run(ws, project_file, CHAT_TASK, "20260101-100000", gate=True, seed=1),
        "b": make_run(ws, project_file, CHAT_TASK, "20260102-100000", gate=True, seed=2),
        "c": make_run(ws, project_file, CHAT_TASK, "20260103-100000", gate=False, seed=3),
        "d": make_run(ws, project_file, CHAT_TASK, "20260104-100000", gate=None, seed=4),
        "cls": make_run(ws, project_file, CLS_TASK, "20260105-100000", gate=True, seed=5),
        "unfinished": make_run(ws, project_file, CHAT_TASK, "20260106-100000", gate=None, seed=6, finished=False),
    }
    return {"root": root, "project": project_file, "ws": ws, "runs": runs, "registry": ModelRegistry(ws)}


def _same_files(a: Path, b: Path) -> None:
    files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert files_a == files_b
    for rel in files_a:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel


def test_register_promote_force_rollback_history_resolve(env):
    reg, runs, ws = env["registry"], env["runs"], env["ws"]
    v1 = reg.register_run(runs["a"], "qa")
    assert (v1.version, v1.gate) == (1, "passed")
    assert (ws / "mlflow.db").is_file() and (ws / "mlruns").is_dir()
    assert v1.lineage == {
        "project": "tiny-project",
        "task": CHAT_TASK,
        "task_type": "chat_sft",
        "method": "lora",
        "base_model": "smollm2-135m-instruct",
        "base_model_path": "/models/smollm2-135m-instruct",
        "dataset_version": "ds1",
        "dataset_path": str(ws / "datasets" / CHAT_TASK / "ds1"),
        "run_dir": str(runs["a"].resolve()),
        "gate": "passed",
    }
    data = reg.client.get_run(v1.run_id).data
    assert data.metrics["rouge_l"] == pytest.approx(0.31) and data.metrics["loss"] == pytest.approx(1.4)
    assert data.params["base_model"] == "smollm2-135m-instruct" and data.params["method"] == "lora"
    assert data.params["task.train.lr"] == "0.001" and data.params["dataset_version"] == "ds1"

    assert reg.register_run(runs["b"], "qa").version == 2
    v3 = reg.register_run(runs["c"], "qa")
    assert (v3.version, v3.gate) == (3, "failed")
    assert "must be at least 0.3000" in v3.tags["gate_failures"]
    v4 = reg.register_run(runs["d"], "qa")
    assert (v4.version, v4.gate) == (4, None)
    with pytest.raises(RegistryError, match="already registered as qa version 1"):
        reg.register_run(runs["a"], "qa")

    assert reg.promote("qa", 1).from_version is None
    assert reg.promote("qa", 1) is None  # already production: no change, no history entry
    assert reg.promote("qa", 2).from_version == 1
    with pytest.raises(RegistryError, match=r"qa version 3 failed its regression gate \(tuned rouge_l 0.2100.*--force --reason"):
        reg.promote("qa", 3)
    with pytest.raises(RegistryError, match="qa version 4 has no gate result"):
        reg.promote("qa", 4)
    with pytest.raises(RegistryError, match="forced promotion needs a reason"):
        reg.promote("qa", 3, force=True)
    assert reg.production("qa") == 2  # refusals changed nothing
    forced = reg.promote("qa", 3, force=True, reason="hotfix for the refund outage")
    assert (forced.forced, forced.from_version, forced.to_version) == (True, 2, 3)
    assert reg.get("qa:3").tags["promotion_forced_reason"] == "hotfix for the refund outage"
    assert reg.get("qa@production").version == 3

    assert (reg.rollback("qa").to_version, reg.production("qa")) == (2, 2)
    assert (reg.rollback("qa", reason="v2 too").to_version, reg.production("qa")) == (1, 1)
    with pytest.raises(RegistryError, match="no earlier production version to roll back to"):
        reg.rollback("qa")

    steps = [(e.seq, e.action, e.from_version, e.to_version, e.forced, e.reason) for e in reg.history("qa")]
    assert steps == [
        (1, "promote", None, 1, False, None),
        (2, "promote", 1, 2, False, None),
        (3, "promote", 2, 3, True, "hotfix for the refund outage"),
        (4, "rollback", 3, 2, False, None),
        (5, "rollback", 2, 1, False, "v2 too"),
    ]
    assert all(e.time.endswith("Z") for e in reg.history("qa"))

    prod = reg.resolve("qa@production")
    assert (prod.version, prod.aliases, prod.lineage["dataset_version"]) == (1, ["production"], "ds1")
    _same_files(prod.path, runs["a"] / "model")
    assert prod.path.is_relative_to(ws / "mlruns")  # the registry's copy, not the run folder
    v2 = reg.resolve("qa:2")
    assert v2.version == 2 and v2.lineage["run_dir"] == str(runs["b"].resolve())
    _same_files(v2.path, runs["b"] / "model")
    assert reg.resolve("qa").version == 1  # a bare name is its production version
    assert reg.get("qa:latest").version == 4
    assert [v.version for v in reg.list_versions("qa")] == [1, 2, 3, 4]
    assert [v.is_production for v in reg.list_versions("qa")] == [True, False, False, False]


def test_module_functions_share_the_workspace_registry(env):
    ws, runs = env["ws"], env["runs"]
    info = register_run(runs["cls"], "router", ws)
    assert info.lineage["task_type"] == "classification" and info.gate == "passed"
    assert promote("router", info.version, workspace=ws).to_version == info.version
    assert [v.version for v in list_versions("router", workspace=ws)] == [info.version]
    assert [e.action for e in history("router", workspace=ws)] == ["promote"]
    found = resolve("router@production", workspace=ws)
    _same_files(found.path, runs["cls"] / "model")
    params = env["registry"].client.get_run(info.run_id).data.params
    assert "task.label_descriptions.billing" in params
    metrics = env["registry"].client.get_run(info.run_id).data.metrics
    assert metrics["macro_f1"] == pytest.approx(0.75) and "per_class.billing.f1" in metrics


def test_errors_are_readable(env):
    reg, runs = env["registry"], env["runs"]
    with pytest.raises(NotRegistered, match="no registered model 'nope'.*tuneloom models register RUN --name nope"):
        reg.resolve("nope")
    with pytest.raises(RegistryError, match="invalid model name 'bad name!'"):
        reg.register_run(runs["a"], "bad name!")
    with pytest.raises(RegistryError, match="must be a number or 'latest'"):
        reg.resolve("qa:two")
    with pytest.raises(RegistryError, match="did not finish"):
        reg.register_run(runs["unfinished"], "errs")
    with pytest.raises(RegistryError, match="not a Tuneloom run folder"):
        reg.register_run(env["root"], "errs")
    reg.register_run(runs["d"], "errs")
    with pytest.raises(VersionNotFound, match="'errs' has no version 7; its versions: 1"):
        reg.promote("errs", 7)
    with pytest.raises(VersionNotFound, match="'errs' has no production version yet"):
        reg.resolve("errs")
    with pytest.raises(VersionNotFound, match="no version with alias 'staging'"):
        reg.resolve("errs@staging")
    with pytest.raises(RegistryError, match="no production version to roll back"):
        reg.rollback("errs")
    assert redact_uri("https://alice:s3cret@mlflow.example.com/api?token=x") == "https://mlflow.example.com/api"


def _fails_readably(result, *needles: str) -> None:
    assert result.exit_code == 2, f"exit {result.exit_code}\n{result.output}\n{result.exception!r}"
    assert "Traceback" not in result.output
    for needle in needles:
        assert needle in result.output, f"{needle!r} not in:\n{result.output}"


def test_cli_commands(env):
    runs, cfg = env["runs"], ["-c", str(env["project"])]

    def invoke(*args: str):
        return runner.invoke(app, ["models", *args])

    result = invoke("register", str(runs["b"]), "--name", "cli-qa")  # a folder: no project file needed
    assert result.exit_code == 0, result.output
    assert "registered as cli-qa version 1 (gate passed)" in result.output
    result = invoke("register", runs["c"].name, "--name", "cli-qa", *cfg)  # a run id: found via the project
    assert result.exit_code == 0, result.output
    assert "version 2 (gate failed)" in result.output
    _fails_readably(invoke("register", "no-such-run", "--name", "cli-qa", *cfg), "no run 'no-such-run'")

    result = invoke("promote", "cli-qa", "1", *cfg)
    assert result.exit_code == 0 and "production is now version 1" in result.output, result.output
    _fails_readably(invoke("promote", "cli-qa", "2", *cfg), "error:", "failed its regression gate", "--force")
    _fails_readably(invoke("promote", "cli-qa", "2", "--force", *cfg), "needs a reason")
    result = invoke("promote", "cli-qa", "2", "--force", "--reason", "ship the fix", *cfg)
    assert result.exit_code == 0, result.output
    assert "production is now version 2 (was version 1) forced: ship the fix" in result.output

    result = invoke("history", "cli-qa", *cfg)
    assert result.exit_code == 0, result.output
    assert "ship the fix" in result.output and "production: version 2" in result.output
    result = invoke("rollback", "cli-qa", *cfg)
    assert result.exit_code == 0 and "rolled back from version 2 to version 1" in result.output, result.output
    _fails_readably(invoke("rollback", "cli-qa", *cfg), "no earlier production version")
    result = invoke("versions", "cli-qa", *cfg)
    assert result.exit_code == 0 and "production" in result.output and "failed" in result.output, result.output
    _fails_readably(invoke("history", "ghost", *cfg), "no registered model 'ghost'")
    _fails_readably(invoke("promote", "cli-qa", "1", "-c", str(env["root"] / "missing.yaml")), "project file not found")


def test_production_for_is_none_until_a_version_is_promoted(env):
    from tuneloom.registry.lookup import production_for

    project = load_project(env["project"])
    task = project.config.task(CHAT_TASK).model_copy(update={"registry_name": "lookup-qa"})
    assert production_for(project, task) is None  # not registered: NotRegistered, not an error
    env["registry"].register_run(env["runs"]["b"], "lookup-qa")
    assert production_for(project, task) is None  # registered, nothing promoted
    env["registry"].promote("lookup-qa", 1)
    found = production_for(project, task)
    assert found is not None and (found.name, found.version) == ("lookup-qa", 1)


_THREADED_FIRST_USE = """
import sys, threading
from pathlib import Path
from tuneloom.registry import ModelRegistry, NotRegistered

assert "mlflow" not in sys.modules, "MLflow was imported before any registry call"
workspace = Path(sys.argv[1])
shared = ModelRegistry(workspace)
errors = []
start = threading.Barrier(9)

def use(i):
    start.wait()
    try:
        if i % 3 == 0:
            shared.client
        else:  # the shared registry, or one of its own on the same (new) database
            try:
                (shared if i % 3 == 1 else ModelRegistry(workspace)).production("nobody")
            except NotRegistered:
                pass
    except Exception as exc:
        errors.append(repr(exc))

threads = [threading.Thread(target=use, args=(i,)) for i in range(9)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print("\\n".join(errors))
sys.exit(1 if errors else 0)
"""


def test_mlflow_is_imported_safely_from_many_threads_at_once(tmp_path):
    """`tuneloom serve` answers requests in threads; the first ones import MLflow together."""
    import tuneloom

    src = str(Path(tuneloom.__file__).resolve().parents[1])
    result = subprocess.run(
        [sys.executable, "-c", _THREADED_FIRST_USE, str(tmp_path / "workspace")],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONPATH": src},
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_copied_workspace_registers_into_its_own_mlruns(tmp_path):
    original = tmp_path / "original"
    project_file = write_project(original, "smollm2-135m-instruct", "all-minilm-l6-v2")
    ws = original / "workspace"
    first = make_run(ws, project_file, CHAT_TASK, "20260101-100000", gate=True, seed=1)
    ModelRegistry(ws).register_run(first, "moved")
    shutil.copytree(original, tmp_path / "copy")
    files_before = sorted((ws / "mlruns").rglob("*"))

    copy_ws = tmp_path / "copy" / "workspace"
    second = make_run(copy_ws, tmp_path / "copy" / project_file.name, CHAT_TASK, "20260102-100000", gate=True, seed=2)
    registry = ModelRegistry(copy_ws)
    assert registry.register_run(second, "moved").version == 2
    assert sorted((ws / "mlruns").rglob("*")) == files_before  # nothing written into the original
    for ref in ("moved:1", "moved:2"):
        assert registry.resolve(ref).path.is_relative_to(copy_ws / "mlruns"), ref
    _same_files(registry.resolve("moved:2").path, second / "model")
    assert ModelRegistry(ws).resolve("moved:1").path.is_relative_to(ws / "mlruns")
    assert [v.version for v in ModelRegistry(ws).list_versions("moved")] == [1]
