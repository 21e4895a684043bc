"""Model scouting: candidates, constraints and ranking, failing candidates, the report, --apply, the CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from tests.conftest import CHAT_TASK, CLS_TASK, EXAMPLE, write_project
from tuneloom.catalog import ModelInfo
from tuneloom.cli import app
from tuneloom.config import ScoutConfig, ScoutConstraints, load_project
from tuneloom.errors import ProjectFileError
from tuneloom.scout import scout_models
from tuneloom.scout.apply import apply_model
from tuneloom.scout.candidates import candidates_for
from tuneloom.scout.measure import MeasureJob, Measurement, run_measurement
from tuneloom.scout.rank import ScoutRow, rank_rows


def _with_scout(path: Path, scout: str) -> Path:
    path.write_text(path.read_text() + "\nscout:\n" + scout, encoding="utf-8")
    return path


def test_candidates_expand_per_task_and_precision(data_project_dir):
    path = _with_scout(
        data_project_dir / "tuneloom.yaml",
        f"""\
  candidates: [smollm2-135m-instruct]
  precisions: [bf16, int8]
  tasks:
    {CLS_TASK}:
      - {{model: all-minilm-l6-v2, precisions: [fp32], label: MiniLM}}
      - smollm2-135m-instruct
""",
    )
    project = load_project(path)
    assert [c.name for c in candidates_for(project, CHAT_TASK)] == [
        "smollm2-135m-instruct @ bf16",
        "smollm2-135m-instruct @ int8",
    ]
    assert [c.name for c in candidates_for(project, CLS_TASK)] == [
        "MiniLM @ fp32",
        "smollm2-135m-instruct @ bf16",
        "smollm2-135m-instruct @ int8",
    ]


def test_scout_section_errors_name_the_field(data_project_dir):
    path = _with_scout(data_project_dir / "tuneloom.yaml", "  tasks: {no-such-task: [x]}\n  precisions: [fp16]\n")
    with pytest.raises(ProjectFileError) as err:
        load_project(path)
    assert "scout.precisions[0]" in str(err.value) and "'fp32', 'bf16', 'int8' or 'nf4'" in str(err.value)
    path.write_text(path.read_text().replace("  precisions: [fp16]\n", ""))
    with pytest.raises(ProjectFileError, match=r"scout.tasks: no task named \['no-such-task'\]"):
        load_project(path)


def _row(
    name: str,
    quality: float,
    memory: float,
    latency: float,
    decode: float | None = None,
    license: str = "apache-2.0",
    context: int = 8192,
    error: str | None = None,
) -> ScoutRow:
    facts = ModelInfo(
        name=name,
        path="/x",
        architecture="A",
        model_type="a",
        parameters=100,
        layers=2,
        hidden_size=8,
        vocab_size=10,
        context_window=context,
        dtype="bf16",
        license=license,
        disk_bytes=1,
        chat_template=True,
    )
    m = Measurement(
        device="cpu",
        load_s=1,
        peak_memory_mb=memory,
        scoring_peak_memory_mb=memory,
        prefill_tokens_per_s=100,
        decode_tokens_per_s_b1=decode,
        decode_tokens_per_s_b8=None,
        ttft_ms=None,
        latency_ms=latency,
        tokens_per_word=1.3,
        over_context_share=0,
        over_max_length_share=0,
        quality={"few_shot_token_f1": quality},
        domain_perplexity=None,
        seconds=1,
    )
    return ScoutRow(
        task="t", model=name, label=name, precision="bf16", facts=facts, measurement=None if error else m, error=error
    )


def test_constraints_mark_reasons_and_the_cheapest_near_best_wins():
    rows = [
        _row("a", 0.300, 900, 2000, decode=20),
        _row("b", 0.290, 300, 1000, decode=40),  # within 2 points of a at a third of the memory
        _row("big", 0.500, 5000, 900, decode=30),  # best, but breaks the memory limit
        _row("gpl", 0.400, 100, 100, decode=90, license="gpl-3.0"),
        _row("short", 0.400, 100, 100, decode=90, context=512),
        _row("slow", 0.400, 100, 9000, decode=5),
        _row("broken", 0.0, 0, 0, error="OSError: no weights"),
    ]
    scout = ScoutConfig(
        constraints=ScoutConstraints(max_memory_gb=2, max_latency_ms=5000, licenses=["apache-2.0", "mit"], min_context=2048)
    )
    chosen, reason = rank_rows(rows, "few_shot_token_f1", scout)
    by = {r.model: r for r in rows}
    assert by["big"].violations == ["peak memory 4.88 GB > max_memory_gb 2.0"]
    assert by["gpl"].violations == ["license 'gpl-3.0' is not in the allowed licenses ['apache-2.0', 'mit']"]
    assert by["short"].violations == ["context window 512 < min_context 2048"]
    assert by["slow"].violations == ["latency 9000 ms > max_latency_ms 5000"]
    assert by["broken"].rank is None and by["big"].rank is None
    assert (by["a"].rank, by["b"].rank) == (1, 2)
    assert chosen is by["b"] and by["b"].recommended and not by["a"].recommended
    assert reason == (
        "b @ bf16: within 1.0 points of a @ bf16's few_shot_token_f1 (0.290 vs 0.300) at 0.33x the memory "
        "(300 MB vs 900 MB) and 2.0x the decode speed (40.0 vs 20.0 tokens/s)."
    )
    scout.quality_tolerance = 0.0
    chosen, reason = rank_rows(rows, "few_shot_token_f1", scout)
    assert chosen is by["a"] and reason.startswith("a @ bf16: the best few_shot_token_f1 (0.300), 1.0 points above b @ bf16")


def test_nothing_eligible_says_why():
    chosen, reason = rank_rows([_row("x", 0.1, 100, 10, error="timed out")], "few_shot_token_f1", ScoutConfig())
    assert chosen is None and reason == "No candidate can be recommended: x @ bf16: timed out."


def test_a_measurement_past_its_time_is_an_error(tmp_path, tiny_llama_dir):
    job = MeasureJob(
        path=str(tiny_llama_dir),
        precision="fp32",
        task_type="chat_sft",
        trust_remote_code=False,
        rows=[],
        texts=[],
        shots=[],
        probe_rows=[],
        labels=None,
        descriptions={},
        max_length=64,
        context_window=512,
        max_new_tokens=4,
        batch_size=2,
        domain_text=None,
    )
    measurement, error = run_measurement(job, 0.5, tmp_path)
    assert measurement is None and error.startswith("timed out: stopped after its time share of 0 s")


def test_apply_changes_only_the_model_value(tmp_path):
    path = tmp_path / "tuneloom.yaml"
    shutil.copy(EXAMPLE / "tuneloom.yaml", path)
    before = path.read_text().splitlines()
    assert apply_model(path, "support-qa", "/models/my model")
    after = path.read_text().splitlines()
    changed = [(a, b) for a, b in zip(before, after) if a != b]
    assert len(before) == len(after) and changed == [("    model: smollm2-135m-instruct", '    model: "/models/my model"')]
    assert load_project(path).config.task("support-qa").model == "/models/my model"
    assert not apply_model(path, "support-qa", "/models/my model")
    with pytest.raises(ProjectFileError, match="cannot find `model:` of task 'nope'"):
        apply_model(path, "nope", "x")


def _broken_copy(src: Path, dst: Path) -> Path:
    """The tiny Llama's files with a config that no longer matches its weights: it fails when loaded."""
    shutil.copytree(src, dst)
    config = json.loads((dst / "config.json").read_text())
    config["hidden_size"] = 96
    (dst / "config.json").write_text(json.dumps(config))
    return dst


def test_scout_end_to_end_on_tiny_models(tmp_path, tiny_llama_dir, tiny_bert_dir, monkeypatch):
    """Every row either measured or carrying its error; report, JSON and --apply."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the measurement subprocesses share 2 cores with the suite
    path = write_project(tmp_path, tiny_llama_dir, tiny_bert_dir)
    broken = _broken_copy(tiny_llama_dir, tmp_path / "broken-llama")
    _with_scout(
        path,
        f"""\
  tasks:
    {CHAT_TASK}:
      - {{model: {tiny_llama_dir}, precisions: [fp32], label: tiny-random (test model)}}
      - {broken}
      - someone/not-pulled
    {CLS_TASK}:
      - {{model: {tiny_bert_dir}, precisions: [fp32], label: tiny-random BERT (test model)}}
  sample_size: 4
  few_shot: 1
  max_new_tokens: 4
  probe_train_size: 30
  constraints: {{licenses: [apache-2.0, unknown]}}
""",
    )
    result = scout_models(load_project(path), apply=True)
    chat, cls = result.tasks
    rows = {r.name: r for r in chat.rows}
    for name in ("tiny-random (test model) @ fp32",):
        m = rows[name].measurement
        assert rows[name].error is None and m is not None
        assert m.peak_memory_mb > 0 and m.decode_tokens_per_s_b1 > 0 and m.decode_tokens_per_s_b8 > 0 and m.ttft_ms > 0
        assert {"loss", "perplexity", "zero_shot_token_f1", "few_shot_token_f1", "few_shot_rouge_l"} <= set(m.quality)
        assert set(rows[name].estimates) == {"inference", "full", "lora", "qlora"}
    assert rows[f"{broken} @ bf16"].measurement is None and "size mismatch" in rows[f"{broken} @ bf16"].error.lower()
    assert "is not downloaded" in rows["someone/not-pulled @ bf16"].error
    assert chat.recommended == "tiny-random (test model) @ fp32"
    assert chat.sample_size == 4 and chat.sampled
    bert = cls.rows[0]
    assert bert.recommended and {"probe_macro_f1", "zero_shot_macro_f1"} <= set(bert.measurement.quality)
    assert bert.measurement.decode_tokens_per_s_b1 is None and "qlora" not in bert.estimates
    html = Path(result.report).read_text()
    assert "Recommendation" in html and html.count("data:image/png;base64") == 4 and "size mismatch" in html
    saved = json.loads(Path(result.json_path).read_text())
    assert saved["tasks"][0]["recommended"] == chat.recommended
    assert result.applied == [] or all(str(tiny_llama_dir) in line for line in result.applied)  # already the model
    assert yaml.safe_load(path.read_text())["tasks"][0]["model"] == str(tiny_llama_dir)


def test_cli_scout_json_and_errors(tmp_path, tiny_llama_dir, tiny_bert_dir):
    path = _with_scout(write_project(tmp_path, tiny_llama_dir, tiny_bert_dir), "  time_budget_s: 1\n")
    runner = CliRunner()
    res = runner.invoke(app, ["scout", "-c", str(path), "--task", CLS_TASK, "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    row = data["tasks"][0]["rows"][0]
    assert row["error"].startswith("not measured: the scout's time budget") and row["estimates"]["inference"]["gb"] > 0
    before = path.read_text()
    res = runner.invoke(app, ["scout", "-c", str(path), "--task", CLS_TASK, "--apply"])
    assert res.exit_code == 0 and "No candidate can be recommended" in res.output and "nothing to change" in res.output
    assert path.read_text() == before
    res = runner.invoke(app, ["scout", "-c", str(path), "--task", "nope"])
    assert res.exit_code == 2 and "no task named 'nope'" in res.output


@pytest.mark.slow
def test_scout_real_smollm2_small_sample(tmp_path, smollm2_dir, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    path = write_project(tmp_path, "smollm2-135m-instruct", "all-minilm-l6-v2")
    _with_scout(path, "  precisions: [bf16]\n  sample_size: 3\n  few_shot: 1\n  max_new_tokens: 8\n")
    result = scout_models(load_project(path), CHAT_TASK)
    row = result.tasks[0].rows[0]
    assert row.error is None and row.recommended, row.error
    f, m = row.facts, row.measurement
    assert 134e6 < f.parameters < 135e6 and f.license == "apache-2.0" and f.chat_template and f.context_window == 8192
    assert 100 < m.peak_memory_mb < 3000 and m.decode_tokens_per_s_b1 > 0 and 1.0 < m.tokens_per_word < 3.0
    assert 0 < m.quality["loss"] < 10 and 0 <= m.quality["few_shot_token_f1"] <= 1
    assert 0.25 < row.estimates["inference"].gb < 2 and row.estimates["lora"].fits
