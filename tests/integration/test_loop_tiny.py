"""The whole loop end to end on tiny random models, driven through the CLI."""

from __future__ import annotations

import base64
import json
import math
import re
from pathlib import Path

import pytest
import yaml
from safetensors import safe_open
from typer.testing import CliRunner

from tests.conftest import CHAT_TASK, CLS_TASK, write_project
from tuneloom.artifacts import read_eval
from tuneloom.cli import app

pytestmark = pytest.mark.timeout(600)

runner = CliRunner()


def _invoke(*args: str):
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, f"exit {result.exit_code}\n{result.output}\n{result.exception!r}"
    assert "Traceback" not in result.output
    return result


@pytest.fixture(scope="module")
def looped(tmp_path_factory, tiny_llama_dir, tiny_bert_dir):
    """A project after `tuneloom run -c PROJECT` (run once for the whole module)."""
    root = tmp_path_factory.mktemp("loop-project")
    config = write_project(root, tiny_llama_dir, tiny_bert_dir)
    result = _invoke("run", "-c", str(config))
    return root, config, result


def _run_dirs(root: Path) -> dict[str, list[Path]]:
    runs: dict[str, list[Path]] = {CHAT_TASK: [], CLS_TASK: []}
    for run in sorted((root / "workspace" / "runs").iterdir()):
        task = yaml.safe_load((run / "config.yaml").read_text())["task"]["name"]
        runs[task].append(run)
    return runs


def test_run_prints_the_comparison_table(looped):
    root, _, result = looped
    out = result.stdout
    assert "tiny-project: base vs tuned on held-out test data" in out
    for metric in ("loss", "perplexity", "rouge_l", "token_f1", "exact_match", "accuracy", "macro_f1", "weighted_f1"):
        assert re.search(
            rf"{CHAT_TASK if metric in ('loss', 'perplexity', 'rouge_l', 'token_f1', 'exact_match') else CLS_TASK}\s*│\s*{metric}\s*│",
            out,
        ), metric
    comparison, _, rest = out.partition("cheap baselines on the same")
    # every row has base, tuned and a signed change
    assert len(re.findall(r"│\s*-?\d+\.\d{4}\s*│\s*-?\d+\.\d{4}\s*│\s*[+-]\d+\.\d{4}\s*│", comparison)) == 8
    # then each task's cheap baselines beside the tuned model
    assert f"{CHAT_TASK}: cheap baselines" in out and f"{CLS_TASK}: cheap baselines" in out
    assert "nearest_bm25" in rest and "tfidf_logreg" in rest
    match = re.search(r"report: (\S+report\.html)", out)
    assert match and Path(match.group(1)).is_file()
    assert Path(match.group(1)).parent.parent == root / "workspace" / "reports"
    assert f"tuneloom eval latest:{CHAT_TASK}" in out
    assert f"forgetting check {CHAT_TASK}: general-ability token F1" in out


def test_report_has_both_tasks_and_embedded_images(looped):
    root, _, _ = looped
    (report,) = (root / "workspace" / "reports").glob("*/report.html")
    html = report.read_text(encoding="utf-8")
    assert "<title>tiny-project: base vs tuned</title>" in html
    assert CHAT_TASK in html and CLS_TASK in html
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    assert len(images) == 9  # chat: loss, bars, intervals, lr; classification: loss, bars, intervals, per-class F1, confusion
    for img in images:
        assert base64.b64decode(img).startswith(b"\x89PNG\r\n\x1a\n")
    assert "Example answers (test split)" in html
    assert "Where tuning helped most and where it hurt" in html and "Where tuning changed the answer" in html
    assert "Results by label" in html  # classification slices default to the label
    assert "Test examples the tuned model got wrong" in html
    assert "Cheap baselines" in html and "nearest_bm25" in html and "tfidf_logreg" in html


@pytest.mark.parametrize("task", [CHAT_TASK, CLS_TASK])
def test_run_folder_contents(looped, task):
    root, _, _ = looped
    (run,) = _run_dirs(root)[task]
    assert run.name.startswith(f"{task}-")
    snapshot = yaml.safe_load((run / "config.yaml").read_text())
    assert snapshot["task"]["name"] == task and snapshot["task"]["train"]["max_steps"] == 3
    assert snapshot["dataset"]["version"] in snapshot["dataset"]["path"]
    assert {"torch", "transformers", "peft", "python"} <= set(snapshot["versions"])

    status = json.loads((run / "status.json").read_text())
    assert status["state"] == "completed" and "error" not in status

    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    losses = [m["loss"] for m in metrics if "loss" in m]
    eval_losses = [m["eval_loss"] for m in metrics if "eval_loss" in m]
    assert losses and eval_losses
    assert all(math.isfinite(x) for x in losses + eval_losses)
    assert max(m["step"] for m in metrics) == 3

    model = run / "model"
    adapter = json.loads((model / "adapter_config.json").read_text())
    assert adapter["r"] == 4 and adapter["lora_alpha"] == 8
    with safe_open(str(model / "adapter_model.safetensors"), framework="pt") as fh:
        keys = list(fh.keys())
    assert any("lora_A" in k for k in keys) and any("lora_B" in k for k in keys)
    assert not list(model.glob("model*.safetensors"))  # adapter only, no full weights
    assert (model / "tokenizer_config.json").is_file()

    summary = json.loads((run / "summary.json").read_text())
    train = summary["train"]
    assert train["steps"] == 3 and train["method"] == "lora"
    assert math.isfinite(train["train_loss"]) and math.isfinite(train["eval_loss"])
    assert 0 < train["trainable_parameters"] < train["total_parameters"]
    assert train["tokens"] > 0

    ev = read_eval(run)
    assert ev.task == task and ev.run == run.name and ev.split == "test"
    assert summary["eval"]["comparison"] == ev.comparison
    for side in ("base", "tuned"):
        for metric in ev.metrics_shown:
            assert math.isfinite(ev.side(side)[metric])
    for c in ev.comparison.values():
        assert c["delta"] == pytest.approx(c["tuned"] - c["base"])


def test_chat_eval_details(looped):
    root, _, _ = looped
    (run,) = _run_dirs(root)[CHAT_TASK]
    ev = read_eval(run)
    assert ev.n_examples == 4 and ev.sampled is True  # 9 test rows, eval.max_examples 4
    assert set(ev.comparison) == {"loss", "perplexity", "rouge_l", "token_f1", "exact_match"}
    for side in ("base", "tuned"):
        m = ev.side(side)
        assert m["perplexity"] == pytest.approx(math.exp(m["loss"]), rel=1e-6)
        assert 0 <= m["rouge_l"] <= 1 and 0 <= m["token_f1"] <= 1 and m["exact_match"] in (0, 0.25, 0.5, 0.75, 1)
    # random tiny model: the loss is about log(vocab size)
    assert ev.base["loss"] == pytest.approx(math.log(49152), rel=0.1)
    assert len(ev.examples) == 4
    test_ids = {
        json.loads(line)["id"]
        for line in (Path(yaml.safe_load((run / "config.yaml").read_text())["dataset"]["path"]) / "test.jsonl").open()
    }
    assert {e["id"] for e in ev.examples} <= test_ids
    forgetting = ev.forgetting  # the general-ability set, scored before and after tuning
    assert forgetting["n"] == 48 and len(forgetting["examples"]) == 48
    assert forgetting["token_f1_drop"] == pytest.approx(forgetting["base"]["token_f1"] - forgetting["tuned"]["token_f1"])


def test_classification_eval_details(looped):
    root, _, _ = looped
    (run,) = _run_dirs(root)[CLS_TASK]
    ev = read_eval(run)
    assert ev.n_examples == 9 and ev.sampled is True  # 12 test rows, eval.max_examples 9
    assert ev.labels == ["billing", "shipping", "tech_support"]
    assert set(ev.comparison) == {"accuracy", "macro_f1", "weighted_f1"}
    for side in ("base", "tuned"):
        assert sum(map(sum, ev.side(side)["confusion"])) == 9
        assert 0 <= ev.side(side)["accuracy"] <= 1
    assert 0 <= ev.tuned["ece"] <= 1 and 0 <= ev.tuned["brier"] <= 2
    assert sum(b["count"] for b in ev.tuned["reliability"]) == 9
    assert all(e["tuned"] in ev.labels and e["base"] in ev.labels for e in ev.examples)
    # the trained classification head is saved with the adapter
    with safe_open(str(run / "model" / "adapter_model.safetensors"), framework="pt") as fh:
        assert any("classifier" in k for k in fh.keys())


def test_eval_latest_task_via_cli(looped):
    root, config, _ = looped
    for task, n in ((CLS_TASK, 9), (CHAT_TASK, 4)):
        result = _invoke("eval", f"latest:{task}", "-c", str(config))
        assert f"{task} on {n} test examples" in result.stdout
        (run,) = _run_dirs(root)[task]
        assert (run / "report.html").is_file()
        assert f"report: {run / 'report.html'}" in result.stdout
        html = (run / "report.html").read_text()
        assert task in html and "data:image/png;base64," in html


def test_eval_by_run_folder_needs_no_project_file(looped, tmp_path, monkeypatch):
    root, _, _ = looped
    (run,) = _run_dirs(root)[CLS_TASK]
    monkeypatch.chdir(tmp_path)  # no tuneloom.yaml here
    result = _invoke("eval", str(run))
    assert f"{CLS_TASK} on 9 test examples" in result.stdout
    assert (run / "report.html").is_file()
    assert json.loads((run / "eval.json").read_text())["run"] == run.name


def test_eval_unknown_run_exits_2(looped):
    _, config, _ = looped
    result = runner.invoke(app, ["eval", "no-such-run", "-c", str(config)])
    assert result.exit_code == 2
    assert "no run 'no-such-run'" in result.output and "Traceback" not in result.output


def test_data_prepare_and_train_with_override_via_cli(looped):
    root, config, _ = looped
    result = _invoke("data", "prepare", "-c", str(config))
    assert f"{CHAT_TASK}: dataset" in result.stdout and f"{CLS_TASK}: dataset" in result.stdout
    assert result.stdout.count("(reused)") == 2  # the loop already prepared both
    assert "splits: {'train': 43, 'validation': 6, 'test': 9}" in result.stdout

    before = _run_dirs(root)[CHAT_TASK]
    result = _invoke("train", "-c", str(config), "--task", CHAT_TASK, "--set", "train.max_steps=2")
    assert f"{CHAT_TASK}: 2 steps, train loss" in result.stdout
    assert "validation loss" in result.stdout
    after = _run_dirs(root)[CHAT_TASK]
    (new,) = set(after) - set(before)
    assert f"next: tuneloom eval {new.name}" in result.stdout
    summary = json.loads((new / "summary.json").read_text())
    assert summary["train"]["steps"] == 2 and "eval" not in summary
    assert yaml.safe_load((new / "config.yaml").read_text())["task"]["train"]["max_steps"] == 2
    assert json.loads((new / "status.json").read_text())["state"] == "completed"
    assert (new / "model" / "adapter_model.safetensors").is_file()
    assert not (new / "eval.json").exists()


def test_run_one_task_only(tmp_path, tiny_llama_dir, tiny_bert_dir):
    config = write_project(tmp_path, tiny_llama_dir, tiny_bert_dir, max_steps=1)
    result = _invoke("run", "-c", str(config), "--task", CLS_TASK, "--set", f"{CLS_TASK}:train.max_steps=2")
    assert CLS_TASK in result.stdout and CHAT_TASK not in result.stdout
    runs = _run_dirs(tmp_path)
    assert runs[CHAT_TASK] == [] and len(runs[CLS_TASK]) == 1
    assert json.loads((runs[CLS_TASK][0] / "summary.json").read_text())["train"]["steps"] == 2
    (report,) = (tmp_path / "workspace" / "reports").glob("*/report.html")
    assert CLS_TASK in report.read_text() and CHAT_TASK not in report.read_text()


def test_train_uses_the_dataset_matching_the_current_data_settings(tmp_path, tiny_llama_dir, tiny_bert_dir):
    """Changing the data settings with --set makes `train` prepare (and use) the matching dataset version."""
    config = write_project(tmp_path, tiny_llama_dir, tiny_bert_dir, max_steps=1)
    _invoke("data", "prepare", "-c", str(config), "--task", CLS_TASK)
    _invoke("train", "-c", str(config), "--task", CLS_TASK, "--set", f"{CLS_TASK}:data.split.seed=11")
    (run,) = (tmp_path / "workspace" / "runs").glob(f"{CLS_TASK}-*")
    used = yaml.safe_load((run / "config.yaml").read_text())["dataset"]["version"]
    versions = [p.name for p in (tmp_path / "workspace" / "datasets" / CLS_TASK).iterdir() if p.is_dir()]
    assert len(versions) == 2 and used in versions
    manifest = json.loads((tmp_path / "workspace" / "datasets" / CLS_TASK / used / "manifest.json").read_text())
    assert manifest["data_config"]["split"]["seed"] == 11
    # evaluate on the other version's test split (a frozen golden set, say)
    (other,) = [v for v in versions if v != used]
    golden = tmp_path / "workspace" / "datasets" / CLS_TASK / other
    _invoke("eval", str(run), "--test-data", str(golden))
    assert json.loads((run / "eval.json").read_text())["test_dataset"] == str(golden)
    bad = runner.invoke(app, ["eval", str(run), "--test-data", str(tmp_path)])
    assert bad.exit_code == 2 and "not a prepared dataset folder" in bad.output
