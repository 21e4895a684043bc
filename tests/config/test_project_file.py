"""The project file: validation, readable errors, overrides and the schema."""

from __future__ import annotations

import textwrap

import pytest
import yaml
from pydantic import ValidationError

from tests.conftest import CHAT_TASK, CLS_TASK, EXAMPLE
from tuneloom.config import ProjectConfig, apply_overrides, load_project, parse_project, project_schema
from tuneloom.errors import ProjectFileError, TuneloomError

BASE = textwrap.dedent(
    """\
    project: demo
    tasks:
      - name: router
        type: classification
        model: all-minilm-l6-v2
        data:
          sources:
            - path: tickets.csv
          columns: {text: [subject, body], label: queue}
        train:
          epochs: 2
      - name: qa
        type: chat_sft
        model: smollm2-135m-instruct
        data:
          sources:
            - path: qa.jsonl
          columns: {prompt: question, response: answer}
    """
)


def _error(text: str) -> str:
    with pytest.raises(ProjectFileError) as info:
        parse_project(text, "demo.yaml")
    return str(info.value)


def _line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


def test_base_document_is_valid():
    config = parse_project(BASE)
    assert config.task_names() == ["router", "qa"]
    router = config.task("router")
    assert router.data.columns.text == ["subject", "body"]
    assert router.train.epochs == 2
    assert router.method.kind == "lora"  # default
    assert config.workspace == "workspace"


def test_example_project_file_validates():
    project = load_project(EXAMPLE / "tuneloom.yaml")
    assert project.config.project == "acme-support"
    assert project.config.task_names() == ["support-qa", "support-search", "ticket-router"]
    qa = project.config.task("support-qa")
    assert qa.type == "chat_sft" and qa.model == "smollm2-135m-instruct"
    assert qa.data.columns.prompt == "question" and qa.data.columns.response == "answer"
    router = project.config.task("ticket-router")
    assert router.type == "classification"
    assert router.data.columns.text == ["subject", "body"] and router.data.columns.label == "queue"
    assert len(router.label_descriptions) == 8
    assert project.root == EXAMPLE.resolve()
    assert project.source_path(qa.data.sources[0]) == (EXAMPLE / "qa.jsonl").resolve()
    assert project.workspace == (EXAMPLE / "workspace").resolve()
    assert qa.knowledge == "acme-policies" and project.config.knowledge_base("acme-policies").sources[1].path == "knowledge"
    assert qa.data.sources[1].split == "test"  # the document-only questions are held out
    search = project.config.task("support-search")  # the embedder: same questions, same split, same knowledge base
    assert search.type == "embedding" and search.knowledge == qa.knowledge and search.data.split == qa.data.split


def test_load_project_accepts_the_folder(data_project_dir):
    project = load_project(data_project_dir)
    assert project.path == (data_project_dir / "tuneloom.yaml").resolve()
    assert project.config.task_names() == [CHAT_TASK, CLS_TASK]


def test_unknown_key_with_scalar_value_names_path_line_and_suggestion():
    text = BASE.replace("    train:\n      epochs: 2\n", "    trian: 3\n")
    msg = _error(text)
    line = _line_of(text, "trian:")
    assert "demo.yaml is not a valid Tuneloom project file" in msg
    assert f"tasks[0].trian (line {line})" in msg
    assert "did you mean 'train'" in msg
    assert "allowed keys here:" in msg and "label_descriptions" in msg


def test_unknown_key_with_block_value_reports_the_key_line():
    text = BASE.replace("    train:\n", "    trian:\n")
    msg = _error(text)
    line = _line_of(text, "trian:")
    assert f"tasks[0].trian (line {line})" in msg, msg


def test_unknown_key_with_block_value_still_names_path_and_suggestion():
    text = BASE.replace("    train:\n", "    trian:\n")
    msg = _error(text)
    assert "tasks[0].trian (line " in msg
    assert "did you mean 'train'" in msg


def test_unknown_nested_and_top_level_keys():
    msg = _error(BASE.replace("label: queue}", "labl: queue}"))
    assert "tasks[0].data.columns.labl" in msg
    assert "did you mean 'label'" in msg
    msg = _error("taks: []\n" + BASE)
    assert "taks (line 1)" in msg and "did you mean 'tasks'" in msg


def test_bad_enum_value_names_allowed_values():
    text = BASE.replace("    train:\n", "    method: {kind: qlor}\n    train:\n")
    msg = _error(text)
    line = _line_of(text, "qlor")
    assert f"tasks[0].method.kind (line {line})" in msg
    assert "'qlor'" in msg
    for allowed in ("'full'", "'lora'", "'qlora'"):
        assert allowed in msg


def test_classification_without_label_column():
    msg = _error(BASE.replace("{text: [subject, body], label: queue}", "{text: [subject, body]}"))
    assert "classification needs data.columns.label" in msg
    assert "tasks[0]" in msg


def test_classification_without_text_column():
    msg = _error(BASE.replace("{text: [subject, body], label: queue}", "{label: queue}"))
    assert "classification needs data.columns.text" in msg


def test_chat_sft_without_prompt_or_response():
    msg = _error(BASE.replace("{prompt: question, response: answer}", "{prompt: question}"))
    assert "chat_sft needs data.columns.prompt and data.columns.response" in msg
    assert "tasks[1]" in msg
    msg = _error(BASE.replace("{prompt: question, response: answer}", "{response: answer}"))
    assert "chat_sft needs data.columns.prompt and data.columns.response" in msg


def test_qlora_refused_for_minilm():
    text = BASE.replace("    train:\n", "    method: {kind: qlora}\n    train:\n")
    msg = _error(text)
    assert "qlora needs a model whose linear layers bitsandbytes can quantize" in msg
    assert "'all-minilm-l6-v2' is not one" in msg


def test_qlora_refused_for_classification_on_other_models():
    text = BASE.replace("model: all-minilm-l6-v2", "model: ./some/local/encoder").replace(
        "    train:\n", "    method: {kind: qlora}\n    train:\n"
    )
    msg = _error(text)
    assert "qlora is supported for chat_sft, preference, pretrain tasks" in msg
    # and qlora stays allowed for chat_sft on a quantizable catalog model
    ok = parse_project(BASE + "    method: {kind: qlora}\n")
    assert ok.task("qa").method.kind == "qlora"


def test_catalog_model_that_cannot_do_the_task():
    msg = _error(BASE.replace("model: smollm2-135m-instruct", "model: all-minilm-l6-v2"))
    assert "catalog model 'all-minilm-l6-v2' cannot do chat_sft" in msg
    assert "supports: classification" in msg


def test_duplicate_task_names():
    msg = _error(BASE.replace("name: qa", "name: router"))
    assert "task names must be unique" in msg and "router" in msg


def test_validation_plus_test_too_large():
    text = BASE.replace(
        "columns: {prompt: question, response: answer}",
        "columns: {prompt: question, response: answer}\n      split: {validation: 0.5, test: 0.45}",
    )
    msg = _error(text)
    assert "tasks[1].data.split" in msg
    assert "must leave at least 10% for training" in msg
    # just under the limit is fine
    ok = parse_project(text.replace("test: 0.45", "test: 0.39"))
    assert ok.task("qa").data.split.test == 0.39


def test_out_of_range_numbers_and_bad_task_name():
    msg = _error(BASE.replace("epochs: 2", "epochs: -1"))
    assert "tasks[0].train.epochs" in msg and "-1" in msg and "greater than 0" in msg
    msg = _error(BASE.replace("name: qa", "name: Q A"))
    assert "tasks[1].name" in msg and "'Q A'" in msg


def test_unknown_eval_metric():
    msg = _error(BASE.replace("epochs: 2", "epochs: 2\n    eval: {metrics: [accuracy, bleu]}"))
    assert "unknown metric(s) ['bleu']" in msg
    assert "macro_f1" in msg


def test_missing_required_fields():
    msg = _error("project: x\ntasks:\n  - name: a\n    type: chat_sft\n")
    assert "tasks[0].model (line 3): required field is missing" in msg
    assert "tasks[0].data (line 3): required field is missing" in msg
    msg = _error("tasks: []\n")
    assert "project" in msg and "required field is missing" in msg


def test_invalid_yaml():
    with pytest.raises(ProjectFileError) as info:
        parse_project("project: x\ntasks: [unclosed\n", "broken.yaml")
    assert "broken.yaml is not valid YAML" in str(info.value)
    assert "line" in str(info.value)


@pytest.mark.parametrize("text", ["- project: x\n- tasks: []\n", "just a string\n", ""])
def test_yaml_that_is_not_a_mapping(text):
    with pytest.raises(ProjectFileError) as info:
        parse_project(text, "list.yaml")
    assert "list.yaml must be a YAML mapping" in str(info.value)


def test_missing_project_file_mentions_init(tmp_path):
    with pytest.raises(ProjectFileError) as info:
        load_project(tmp_path / "nowhere.yaml")
    msg = str(info.value)
    assert "project file not found" in msg and "nowhere.yaml" in msg
    assert "`tuneloom init`" in msg
    with pytest.raises(ProjectFileError, match="tuneloom init"):
        load_project(tmp_path)  # a folder without tuneloom.yaml


def test_project_file_error_is_a_tuneloom_error():
    assert issubclass(ProjectFileError, TuneloomError)


# ---------------------------------------------------------------------------------- overrides


def test_override_applies_to_every_task():
    config = apply_overrides(parse_project(BASE), ["train.lr=1e-4"])
    assert [t.train.lr for t in config.tasks] == [1e-4, 1e-4]
    assert isinstance(config.tasks[0].train.lr, float)


def test_override_for_one_task():
    original = parse_project(BASE)
    config = apply_overrides(original, ["qa:train.epochs=7", "router:method.r=4"])
    assert config.task("qa").train.epochs == 7
    assert config.task("router").train.epochs == 2  # untouched
    assert config.task("router").method.r == 4
    assert config.task("qa").method.r == 16
    assert original.task("qa").train.epochs == 3  # the input is not mutated


def test_override_yaml_values():
    config = apply_overrides(
        parse_project(BASE),
        ["qa:train.max_steps=5", "router:data.columns.text=[body]", "qa:data.system_prompt=Be brief."],
    )
    assert config.task("qa").train.max_steps == 5
    assert config.task("router").data.columns.text == ["body"]
    assert config.task("qa").data.system_prompt == "Be brief."


def test_load_project_with_overrides(data_project_dir):
    project = load_project(data_project_dir / "tuneloom.yaml", [f"{CLS_TASK}:train.batch_size=2"])
    assert project.config.task(CLS_TASK).train.batch_size == 2
    assert project.config.task(CHAT_TASK).train.batch_size == 4


@pytest.mark.parametrize(
    "override, expected",
    [
        ("train.lr", "must look like key.path=value"),
        ("nosuch:train.lr=1e-4", "no task named 'nosuch'"),
        ("trian.lr=1e-4", "'trian' is not a section of a task"),
        ("train.epochs.x=1", "'epochs' is not a section of a task"),
    ],
)
def test_override_bad_key_path(override, expected):
    with pytest.raises(ProjectFileError) as info:
        apply_overrides(parse_project(BASE), [override])
    assert expected in str(info.value)


def test_override_unknown_leaf_key_is_reported():
    with pytest.raises(ProjectFileError) as info:
        apply_overrides(parse_project(BASE), ["train.lrr=1e-4"])
    msg = str(info.value)
    assert "--set overrides" in msg
    assert "tasks[0].train.lrr" in msg and "did you mean 'lr'" in msg


@pytest.mark.parametrize(
    "override, expected",
    [
        ("train.lr=2", "tasks[0].train.lr"),
        ("qa:train.batch_size=zero", "tasks[1].train.batch_size"),
        ("router:method.kind=qlora", "qlora needs a model"),
        ("qa:train.scheduler=warp", "'warp'"),
    ],
)
def test_override_value_failing_validation(override, expected):
    with pytest.raises(ProjectFileError) as info:
        apply_overrides(parse_project(BASE), [override])
    msg = str(info.value)
    assert "--set overrides is not a valid Tuneloom project file" in msg
    assert expected in msg


# ------------------------------------------------------------------------------ schema, task()


def test_project_schema():
    schema = project_schema()
    assert "tasks" in schema["properties"]
    assert set(schema["required"]) >= {"project", "tasks"}
    defs = schema["$defs"]
    assert {"TaskConfig", "TrainConfig", "MethodConfig", "DataConfig"} <= set(defs)
    assert defs["MethodConfig"]["properties"]["kind"]["enum"] == ["full", "lora", "dora", "qlora"]
    assert defs["TaskConfig"]["additionalProperties"] is False


def test_task_lookup():
    config = parse_project(BASE)
    assert config.task("qa").name == "qa"
    with pytest.raises(ProjectFileError) as info:
        config.task("rooter")
    assert "no task named 'rooter'" in str(info.value)
    assert "did you mean 'router'" in str(info.value)
    with pytest.raises(ProjectFileError) as info:
        config.task("zzzzzz")
    assert "did you mean" not in str(info.value) and "['router', 'qa']" in str(info.value)
    with pytest.raises(ProjectFileError, match="several tasks"):
        config.task(None)


def test_single_task_is_the_default():
    data = yaml.safe_load(BASE)
    data["tasks"] = data["tasks"][:1]
    config = ProjectConfig.model_validate(data)
    assert config.task(None).name == "router"


def test_config_models_forbid_assignment_of_bad_values():
    config = parse_project(BASE)
    with pytest.raises(ValidationError):
        config.tasks[0].train.lr = 5.0
