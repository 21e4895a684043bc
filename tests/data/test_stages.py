"""The stages after ingest: clean, dedup, redact, format per task type, split, token lengths, report."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import CHAT_TASK, CLS_TASK, write_jsonl
from tests.data_files import project, write_table
from tuneloom.atomic import read_jsonl
from tuneloom.config import CleanConfig, ProjectFileError, load_project
from tuneloom.data import load_split, prepare_dataset
from tuneloom.data.clean import Cleaner
from tuneloom.data.redact import Redactor, iban_ok, luhn_ok
from tuneloom.errors import DataError

SPLITS = ("train", "validation", "test")
ALL_TYPES = ["email", "phone", "iban", "card", "ip", "postal_code", "id_number"]


def _rows(ds) -> list[dict]:
    return [r for s in SPLITS for r in load_split(ds.path, s)]


def _rejects(ds) -> dict[str, dict]:
    return {r["location"]: r for r in read_jsonl(Path(ds.path) / "rejects.jsonl")}


def _accounting(ds) -> None:
    for s in ds.sources:
        assert s.read == s.kept + sum(s.rejected.values()) + s.duplicates, s
    assert len(_rejects(ds)) == sum(sum(s.rejected.values()) + s.duplicates for s in ds.sources)
    assert sum(ds.counts.values()) == sum(s.kept for s in ds.sources)


def _prepare(root: Path, task: str = "t"):
    return prepare_dataset(load_project(root), task)


# ------------------------------------------------------------------------------------ redaction


def test_checksums():
    assert luhn_ok("4111111111111111") and not luhn_ok("4111111111111112")
    assert iban_ok("GB82 WEST 1234 5698 7654 32") and iban_ok("DE89370400440532013000")
    assert not iban_ok("GB82 WEST 1234 5698 7654 33")


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Mail anna.k@mail.example or ANNA.K@mail.example", "Mail <EMAIL_1> or <EMAIL_1>"),
        ("Call 07700 900 412, or +44 20 7946 0958", "Call <PHONE_1>, or <PHONE_2>"),
        ("Refund to GB82 WEST 1234 5698 7654 32 please", "Refund to <IBAN_1> please"),
        ("Bad IBAN GB82 WEST 1234 5698 7654 33 stays", "Bad IBAN GB82 WEST 1234 5698 7654 33 stays"),
        ("Card 4111 1111 1111 1111 and 4111-1111-1111-1111", "Card <CARD_1> and <CARD_1>"),
        ("Not a card 4111 1111 1111 1112", "Not a card 4111 1111 1111 1112"),
        ("IP 192.168.1.20, not 999.1.1.1", "IP <IP_1>, not 999.1.1.1"),
        ("I live at 8 Heworth Green, York YO31 7TQ.", "I live at 8 Heworth Green, York <POSTAL_CODE_1>."),
        ("Via Garibaldi 27, 20121 Milano", "Via Garibaldi 27, <POSTAL_CODE_1> Milano"),
        (
            "SSN 123-45-6789, NI AB 12 34 56 C, passport no. X1234567",
            "SSN <ID_NUMBER_1>, NI <ID_NUMBER_2>, passport no. <ID_NUMBER_3>",
        ),
        ("VAT no. GB 987 6543 21)", "VAT no. <ID_NUMBER_1>)"),
        # things that look like numbers but are not personal data stay
        (
            "Order ACM-604173 on 22/01/2026 at 10:30 for £79.99 (2026-02-02)",
            "Order ACM-604173 on 22/01/2026 at 10:30 for £79.99 (2026-02-02)",
        ),
        ("Tracking JD014600004567891234, model RT-AX86U", "Tracking JD014600004567891234, model RT-AX86U"),
    ],
)
def test_patterns(text, expected):
    (out,), counts, _ = Redactor(ALL_TYPES).example([text])
    assert out == expected


def test_same_value_same_placeholder_across_fields_of_one_example():
    texts, counts, originals = Redactor(ALL_TYPES).example(["I am bo@x.example, backup al@x.example", "Write to bo@x.example"])
    assert texts == ["I am <EMAIL_1>, backup <EMAIL_2>", "Write to <EMAIL_1>"]
    assert counts == {"email": 3}
    assert {o["placeholder"] for o in originals} == {"<EMAIL_1>", "<EMAIL_2>"}
    # a new example numbers from 1 again
    assert Redactor(ALL_TYPES).example(["al@x.example"])[0] == ["<EMAIL_1>"]


def test_only_configured_types():
    (out,), _, _ = Redactor(["email"]).example(["bo@x.example 07700 900 412"])
    assert out == "<EMAIL_1> 07700 900 412"


def _pii_project(root: Path, keep: bool = False) -> Path:
    write_jsonl(
        root / "qa.jsonl",
        [
            {
                "question": f"My card 4111 1111 1111 1111 was charged twice, order {i}?",
                "answer": f"Sorry! We refunded it. Write to billing{i}@acme.example or call 07700 900 {100 + i}.",
            }
            for i in range(12)
        ],
    )
    keep_line = "        keep_originals: true\n" if keep else ""
    return project(
        root,
        "chat_sft",
        "some/model",
        "      sources: [{path: qa.jsonl}]\n      columns: {prompt: question, response: answer}\n"
        f"      token_stats: false\n      dedup: {{near: false}}\n      redact:\n        enabled: true\n{keep_line}",
    )


def test_redaction_in_the_pipeline_never_writes_originals(tmp_path):
    ds = _prepare(_pii_project(tmp_path))
    assert ds.redacted == {"card": 12, "email": 12, "phone": 12}
    assert ds.sources[0].redacted == ds.redacted
    folder = Path(ds.path)
    everything = "".join(p.read_text() for p in folder.iterdir())
    assert "4111" not in everything and "@acme.example" not in everything and "07700" not in everything
    assert not (folder / "redactions.jsonl").exists()
    row = _rows(ds)[0]
    assert "<CARD_1>" in row["messages"][0]["content"] and "<EMAIL_1>" in row["messages"][1]["content"]
    assert "card" in (folder / "report.html").read_text()


def test_keep_originals_opt_in(tmp_path):
    ds = _prepare(_pii_project(tmp_path, keep=True))
    saved = read_jsonl(Path(ds.path) / "redactions.jsonl")
    assert len(saved) == 12
    pairs = {p["placeholder"]: p["original"] for p in saved[0]["replaced"]}
    assert pairs["<CARD_1>"] == "4111111111111111" and pairs["<EMAIL_1>"].endswith("@acme.example")


def test_person_needs_a_model(tmp_path):
    project(
        tmp_path,
        "pretrain",
        "some/model",
        "      sources: [{path: a.txt}]\n      columns: {text: text}\n      redact: {enabled: true, types: [email, person]}\n",
    )
    with pytest.raises(ProjectFileError, match="'person', which needs redact.ner_model"):
        load_project(tmp_path)
    (tmp_path / "a.txt").write_text("hello Anna")
    project(
        tmp_path,
        "pretrain",
        "some/model",
        "      sources: [{path: a.txt}]\n      columns: {text: text}\n"
        f"      redact: {{enabled: true, types: [person], ner_model: {tmp_path / 'nothing'}}}\n",
    )
    with pytest.raises(DataError, match="is not a local model folder with config.json"):
        _prepare(tmp_path)


# -------------------------------------------------------------------------------- cleaning


def test_default_boilerplate_rules():
    text = (
        "Hi,\n\nMy camera is offline since Monday.\n\nThanks,\nPriya\n\n--\nPriya Sharma\nMob: 07700 900 412\n\n"
        "On 3 Feb 2026, Acme Support <support@acme.example> wrote:\n> Hi Priya,\n> try a restart."
    )
    cleaner = Cleaner(CleanConfig(default_boilerplate=True))
    assert cleaner.text(text) == "Hi,\n\nMy camera is offline since Monday.\n\nThanks,\nPriya"
    disclaimer = "Please send the invoice.\n\nThis email and any attachments are confidential and intended solely for you."
    assert cleaner.text(disclaimer) == "Please send the invoice."
    assert Cleaner(CleanConfig()).text(text).endswith("> try a restart.")  # off by default


def test_custom_rules_and_invalid_regex(tmp_path):
    cleaner = Cleaner(
        CleanConfig.model_validate(
            {"boilerplate": [{"pattern": r"^Ticket ref: \S+$"}, {"pattern": r"^Best regards", "action": "cut_from"}]}
        )
    )
    assert cleaner.text("Ticket ref: A-1\nHelp me\nBest regards\nBob") == "Help me"
    project(
        tmp_path,
        "pretrain",
        "some/model",
        "      sources: [{path: a.txt}]\n      columns: {text: text}\n"
        "      clean:\n        boilerplate: [{pattern: '(unclosed'}]\n",
    )
    with pytest.raises(
        ProjectFileError, match=r"data.clean.boilerplate\[0\].pattern \(line 11\).*not a valid regular expression"
    ):
        load_project(tmp_path)


def test_quality_filters(tmp_path):
    rows = [{"text": f"A normal sentence about the hub number {i}."} for i in range(6)]
    rows += [
        {"text": "$$$ %%% ^^^ *** ### @@@ !!!"},
        {"text": "same line\n" * 6},
        {"text": "Das ist ein ganz normaler deutscher Satz über den Router und das WLAN zu Hause."},
    ]
    write_jsonl(tmp_path / "a.jsonl", rows)
    project(
        tmp_path,
        "pretrain",
        "some/model",
        "      sources: [{path: a.jsonl}]\n      columns: {text: text}\n"
        "      token_stats: false\n      clean: {languages: [en]}\n",
    )
    ds = _prepare(tmp_path)
    assert ds.sources[0].rejected == {"mostly_symbols": 1, "repeated_lines": 1, "language_not_allowed": 1}
    _accounting(ds)


def test_html_cells_become_text(tmp_path):
    write_table(
        tmp_path / "t.csv", [{"body": f"<p>Hello <b>team</b>,</p><p>ticket {i}</p>", "queue": "billing"} for i in range(4)]
    )
    project(
        tmp_path,
        "classification",
        "all-minilm-l6-v2",
        "      sources: [{path: t.csv}]\n      columns: {text: body, label: queue}\n      token_stats: false\n",
    )
    assert {r["text"] for r in _rows(_prepare(tmp_path))} == {f"Hello team,\n\nticket {i}" for i in range(4)}


# ------------------------------------------------------------------------------- near duplicates


def test_near_duplicates_removed_within_and_across_splits(tmp_path):
    import random

    rng = random.Random(0)
    words = "router camera doorbell refund parcel invoice battery firmware account password courier plan".split()
    base = [" ".join(rng.choice(words) + str(rng.randrange(1000)) for _ in range(40)) for _ in range(60)]
    rows = [{"body": t, "queue": "billing" if i % 2 else "shipping"} for i, t in enumerate(base)]
    for i in range(0, 60, 4):  # re-sent with one word changed at the end: Jaccard of 5-grams ~ 0.95
        rows.append({"body": base[i].rsplit(" ", 1)[0] + " thanks", "queue": rows[i]["queue"]})
    write_table(tmp_path / "t.csv", rows)
    project(
        tmp_path,
        "classification",
        "all-minilm-l6-v2",
        "      sources: [{path: t.csv}]\n      columns: {text: body, label: queue}\n      token_stats: false\n",
    )
    ds = _prepare(tmp_path)
    (src,) = ds.sources
    assert (src.duplicates, src.near_duplicates, src.kept) == (15, 15, 60)
    rejects = _rejects(ds)
    first = rejects["t.csv:row 61"]
    assert first["reason"] == "near_duplicate" and first["duplicate_of"] == "t.csv:row 1" and first["similarity"] >= 0.8
    kept_texts = {r["text"] for r in _rows(ds)}
    assert kept_texts == set(base)
    report = (Path(ds.path) / "report.html").read_text()
    assert "Near-duplicate clusters" in report and "t.csv:row 61" in report
    _accounting(ds)


def test_near_dedup_can_be_switched_off(tmp_path):
    rows = [{"text": "the same long sentence about routers and cameras and parcels " + str(i)} for i in range(5)]
    write_jsonl(tmp_path / "a.jsonl", rows)
    project(
        tmp_path,
        "pretrain",
        "some/model",
        "      sources: [{path: a.jsonl}]\n      columns: {text: text}\n      token_stats: false\n      dedup: {near: false}\n",
    )
    assert _prepare(tmp_path).sources[0].kept == 5
    project(
        tmp_path,
        "pretrain",
        "some/model",
        "      sources: [{path: a.jsonl}]\n      columns: {text: text}\n"
        "      token_stats: false\n      dedup: {threshold: 0.5}\n",
    )
    assert _prepare(tmp_path).sources[0].near_duplicates == 4


# ------------------------------------------------------------------------------- task formats


def test_chat_messages_column_multi_turn(tmp_path):
    def good(i: int) -> list[dict[str, str]]:
        return [
            {"role": "user", "content": f"Is the hub {i} waterproof?"},
            {"role": "assistant", "content": "No."},
            {"role": "user", "content": "And the camera?"},
            {"role": "assistant", "content": f"Yes, IP65 ({i})."},
        ]

    rows = [{"conv": good(i) if i != 3 else [{"role": "robot", "content": "x"}]} for i in range(8)]
    rows.append({"conv": json.dumps([{"role": "user", "content": "only a question"}])})
    write_jsonl(tmp_path / "c.jsonl", rows)
    project(
        tmp_path,
        "chat_sft",
        "some/model",
        "      sources: [{path: c.jsonl}]\n      columns: {messages: conv}\n"
        "      system_prompt: Be brief.\n      token_stats: false\n",
    )
    ds = _prepare(tmp_path)
    assert ds.sources[0].rejected == {"invalid_messages": 1, "no_assistant_turn": 1}
    row = _rows(ds)[0]
    assert [m["role"] for m in row["messages"]] == ["system", "user", "assistant", "user", "assistant"]
    assert row["messages"][0]["content"] == "Be brief."


def test_multi_label_classification(tmp_path):
    rows = [
        {"text": f"ticket {i} about money and a parcel", "tags": "billing, shipping" if i % 2 else json.dumps(["billing"])}
        for i in range(10)
    ] + [{"text": "no tags here", "tags": ""}]
    write_jsonl(tmp_path / "m.jsonl", rows)
    project(
        tmp_path,
        "classification",
        "all-minilm-l6-v2",
        "      sources: [{path: m.jsonl}]\n      columns: {text: text, label: tags}\n      multi_label: true\n"
        "      token_stats: false\n      dedup: {near: false}\n",
    )
    ds = _prepare(tmp_path)
    assert ds.labels == ["billing", "shipping"]
    assert ds.sources[0].rejected == {"missing_label": 1}
    rows_out = _rows(ds)
    assert all(set(r) == {"text", "labels", "id", "source"} for r in rows_out)
    assert Counter(tuple(r["labels"]) for r in rows_out) == {("billing", "shipping"): 5, ("billing",): 5}


def test_ner_rows_and_span_validation(tmp_path, smollm2_dir):
    text = "Anna Weber ordered a Doorbell Pro in Leeds."
    ok = [{"start": 0, "end": 10, "label": "PER"}, {"start": 37, "end": 42, "label": "LOC"}]
    rows = [{"text": text + f" ({i})", "ents": ok[::-1]} for i in range(8)]
    rows += [
        {"text": text, "ents": [{"start": 0, "end": 99, "label": "PER"}]},
        {"text": text, "ents": [{"start": 0, "end": 10, "label": "PER"}, {"start": 5, "end": 12, "label": "X"}]},
        {"text": text, "ents": "not spans"},
        {"text": text + " (csv-style)", "ents": json.dumps([[0, 4, "PER"]])},
    ]  # a JSON cell of triples
    write_jsonl(tmp_path / "n.jsonl", rows)
    project(
        tmp_path,
        "ner",
        smollm2_dir,
        "      sources: [{path: n.jsonl}]\n      columns: {text: text, entities: ents}\n      dedup: {near: false}\n",
    )
    ds = _prepare(tmp_path)
    assert ds.sources[0].rejected == {"entity_out_of_range": 1, "overlapping_entities": 1, "invalid_entities": 1}
    assert ds.labels == ["LOC", "PER"]
    row = next(r for r in _rows(ds) if r["source"] == "n.jsonl:1")
    assert row["entities"] == ok  # sorted by start
    assert row["text"][row["entities"][1]["start"] : row["entities"][1]["end"]] == "Leeds"
    manifest = json.loads((Path(ds.path) / "manifest.json").read_text())
    assert manifest["result"]["labels"] == ["LOC", "PER"] and manifest["task_type"] == "ner"
    assert manifest["tokens"]["train"]["n"] == ds.counts["train"]
    assert "misaligned_entities" in manifest["tokens"]["train"]


def test_preference_rows(tmp_path):
    rows = [{"q": f"Can I return the hub {i}?", "good": "Yes, within 30 days.", "bad": "No."} for i in range(8)]
    rows.append({"q": "Same?", "good": "Same answer.", "bad": "Same answer."})
    write_jsonl(tmp_path / "p.jsonl", rows)
    project(
        tmp_path,
        "preference",
        "some/model",
        "      sources: [{path: p.jsonl}]\n      columns: {prompt: q, chosen: good, rejected: bad}\n"
        "      system_prompt: You are Acme support.\n      token_stats: false\n      dedup: {near: false}\n",
    )
    ds = _prepare(tmp_path)
    assert ds.sources[0].rejected == {"chosen_equals_rejected": 1}
    row = _rows(ds)[0]
    assert set(row) == {"prompt", "chosen", "rejected", "id", "source"}
    assert [m["role"] for m in row["prompt"]] == ["system", "user"]
    assert row["chosen"] == [{"role": "assistant", "content": "Yes, within 30 days."}]
    assert row["rejected"] == [{"role": "assistant", "content": "No."}]


@pytest.mark.parametrize(
    "task_type, columns, message",
    [
        ("chat_sft", "{prompt: q, response: a, messages: m}", "either data.columns.messages or data.columns.prompt"),
        ("chat_sft", "{prompt: q}", "chat_sft needs data.columns.prompt and data.columns.response"),
        ("ner", "{text: t}", "ner needs data.columns.entities"),
        ("classification", "{text: t, label: l, entities: e}", "data.columns.entities is not used by classification"),
        ("preference", "{prompt: q, chosen: c}", "preference needs data.columns.rejected"),
        ("pretrain", "{text: t, label: l}", "data.columns.label is not used by pretrain"),
    ],
)
def test_column_roles_fit_the_task_type(tmp_path, task_type, columns, message):
    project(tmp_path, task_type, "some/model", f"      sources: [{{path: a.csv}}]\n      columns: {columns}\n")
    with pytest.raises(ProjectFileError, match=message):
        load_project(tmp_path)


def test_multi_label_only_for_classification(tmp_path):
    project(
        tmp_path, "pretrain", "some/model", "      sources: [{path: a.csv}]\n      columns: {text: t}\n      multi_label: true\n"
    )
    with pytest.raises(ProjectFileError, match="multi_label applies to classification tasks only"):
        load_project(tmp_path)


# ----------------------------------------------------------------------------------- splitting


def test_group_aware_split(tmp_path):
    rows = [
        {
            "text": f"customer {c} message {m} about a parcel that went missing",
            "customer": f"c{c}",
            "queue": "shipping" if c % 2 else "billing",
        }
        for c in range(30)
        for m in range(c % 4 + 1)
    ]
    write_table(tmp_path / "t.csv", rows)
    project(
        tmp_path,
        "classification",
        "all-minilm-l6-v2",
        "      sources: [{path: t.csv}]\n      columns: {text: text, label: queue, group: customer}\n"
        "      token_stats: false\n      dedup: {near: false}\n",
    )
    ds = _prepare(tmp_path)
    where: dict[str, set[str]] = {}
    for split in SPLITS:
        for r in load_split(ds.path, split):
            assert "group" not in r
            where.setdefault(r["text"].split(" message")[0], set()).add(split)
    assert all(len(s) == 1 for s in where.values())
    assert all(ds.counts[s] > 0 for s in SPLITS)


def test_user_split_column(tmp_path):
    rows = [{"text": f"question number {i} about the hub", "part": ["train", "TRAIN", "dev", "test"][i % 4]} for i in range(12)]
    rows.append({"text": "a row with a bad split", "part": "holdout"})
    write_jsonl(tmp_path / "a.jsonl", rows)
    project(
        tmp_path,
        "pretrain",
        "some/model",
        "      sources: [{path: a.jsonl}]\n      columns: {text: text, split: part}\n"
        "      token_stats: false\n      dedup: {near: false}\n",
    )
    ds = _prepare(tmp_path)
    assert ds.counts == {"train": 6, "validation": 3, "test": 3}
    assert ds.sources[0].rejected == {"invalid_split_value": 1}
    assert all(int(r["text"].split()[2]) % 4 == 3 for r in load_split(ds.path, "test"))


# ------------------------------------------------------------------------- tokens and the report


def test_token_stats_and_over_length_reject(data_project_dir):
    ds = prepare_dataset(load_project(data_project_dir), CHAT_TASK)
    manifest = json.loads((Path(ds.path) / "manifest.json").read_text())
    stats = manifest["tokens"]["train"]
    assert stats["n"] == ds.counts["train"] and stats["max_length"] == 128 and stats["context_window"] == 8192
    assert 20 < stats["mean"] < 128 and stats["over_max_length"] == 0
    short = prepare_dataset(
        load_project(data_project_dir, [f"{CHAT_TASK}:train.max_length={stats['p50']}", f"{CHAT_TASK}:data.over_length=reject"]),
        CHAT_TASK,
    )
    dropped = short.sources[0].rejected["over_max_tokens"]
    assert dropped > 0 and sum(short.counts.values()) == sum(ds.counts.values()) - dropped
    _accounting(short)
    assert all(r["tokens"] > 0 for r in _rejects(short).values() if r["reason"] == "over_max_tokens")


def test_truncate_policy_warns(data_project_dir):
    ds = prepare_dataset(load_project(data_project_dir, [f"{CHAT_TASK}:train.max_length=20"]), CHAT_TASK)
    assert any("will be truncated in training" in w for w in ds.warnings)


def test_tokenizer_unavailable_is_a_warning(tmp_path):
    write_jsonl(tmp_path / "a.jsonl", [{"text": f"some text {i}"} for i in range(5)])
    project(tmp_path, "pretrain", "nobody/not-downloaded", "      sources: [{path: a.jsonl}]\n      columns: {text: text}\n")
    ds = _prepare(tmp_path)
    assert any(
        w.startswith("token statistics skipped: tokenizer of 'nobody/not-downloaded' not available offline") for w in ds.warnings
    )


def test_report_and_manifest(data_project_dir):
    ds = prepare_dataset(load_project(data_project_dir), CLS_TASK)
    folder = Path(ds.path)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["libraries"]["datasketch"] and manifest["libraries"]["pandas"]
    (src,) = manifest["result"]["sources"]
    assert src["files"] == {"tickets.csv": src["sha256"]}
    report = (folder / "report.html").read_text()
    for needle in ("Accounting", "tickets.csv", "empty_or_short_text 1", "Token lengths", "Labels", "data:image/png;base64,"):
        assert needle in report, needle
    assert report.count("<img") >= 4  # tokens, characters, labels, drop reasons


def test_rare_class_warning(data_project_dir):
    ds = prepare_dataset(load_project(data_project_dir, [f"{CLS_TASK}:data.rare_class_min=50"]), CLS_TASK)
    assert any(w.startswith("rare label(s) with fewer than 50 examples") for w in ds.warnings)


def test_person_names_by_a_token_classification_model(tmp_path, minilm_dir):
    """The NER pass is wired through transformers' pipeline: a tiny model biased to tag every token PER."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForTokenClassification

    from tuneloom.data.redact import load_person_finder

    tokenizer = AutoTokenizer.from_pretrained(minilm_dir)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        id2label={0: "O", 1: "B-PER", 2: "I-PER"},
        label2id={"O": 0, "B-PER": 1, "I-PER": 2},
    )
    model = BertForTokenClassification(config)
    with torch.no_grad():
        model.classifier.weight.zero_()
        model.classifier.bias.copy_(torch.tensor([0.0, 5.0, 0.0]))
    model.save_pretrained(tmp_path / "ner", safe_serialization=True)
    tokenizer.save_pretrained(tmp_path / "ner")
    find = load_person_finder(str(tmp_path / "ner"))
    spans = find("Anna Weber")
    assert spans and all(0 <= a < b <= len("Anna Weber") for a, b in spans)
    texts, counts, _ = Redactor(["person", "email"], find).example(["Anna Weber"])
    assert "Anna" not in texts[0] and "<PERSON_1>" in texts[0] and counts["person"] >= 1
