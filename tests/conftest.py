"""Shared fixtures: tiny random models (real tokenizers) and a small two-task project.

Nothing here touches the network: the hub is forced offline and its cache points at a temporary
folder before anything imports huggingface_hub.
"""

from __future__ import annotations

import csv
import json
import os
import tempfile
from pathlib import Path

# Must happen before tuneloom / transformers / huggingface_hub are imported anywhere.
_HF_HOME = tempfile.mkdtemp(prefix="tuneloom-tests-hf-")
os.environ["HF_HOME"] = _HF_HOME
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
# Rich wraps console output at the terminal width (80 under CliRunner); keep messages on one line.
os.environ["COLUMNS"] = "400"

import pytest  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "acme-support"

CHAT_TASK = "helpdesk-qa"
CLS_TASK = "ticket-triage"


# --------------------------------------------------------------------------------------------
# models


@pytest.fixture(scope="session")
def smollm2_dir() -> Path:
    """The real SmolLM2-135M-Instruct converted folder (cached in ~/.cache/tuneloom)."""
    from tuneloom.catalog import CATALOG
    from tuneloom.catalog.resolve import prepare_catalog_model

    return prepare_catalog_model(CATALOG["smollm2-135m-instruct"])


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    from tuneloom.catalog import resolve_model

    return resolve_model("all-minilm-l6-v2")


@pytest.fixture(scope="session")
def smollm2_tokenizer(smollm2_dir):
    from tuneloom.train import sft

    return sft.load_tokenizer(smollm2_dir)


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory, smollm2_dir) -> Path:
    """A 2-layer random Llama with SmolLM2's real tokenizer and chat template (safetensors)."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    out = tmp_path_factory.mktemp("tiny-llama")
    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir)
    config = LlamaConfig(
        vocab_size=49152,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    assert any(out.glob("*.safetensors"))
    return out


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory, minilm_dir) -> Path:
    """A 2-layer random BERT encoder with the all-MiniLM-L6-v2 tokenizer (safetensors)."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    out = tmp_path_factory.mktemp("tiny-bert")
    tokenizer = AutoTokenizer.from_pretrained(minilm_dir)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=512,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    model = BertModel(config)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    assert any(out.glob("*.safetensors"))
    return out


# --------------------------------------------------------------------------------------------
# data

_PRODUCTS = ["Cam Outdoor", "Doorbell Pro", "Smart Plug", "Thermostat", "Home Hub", "Motion Sensor"]
_QUESTIONS = [
    ("How do I reset the {p}?", "Hold the button on the {p} for ten seconds until the light blinks blue."),
    ("What is the warranty on the {p}?", "The {p} has a two year warranty from the delivery date."),
    ("Can I return the {p} after 30 days?", "No. Returns of the {p} are accepted within 30 days only."),
    ("Does the {p} work without Wi-Fi?", "The {p} needs a 2.4 GHz Wi-Fi network for remote access."),
    ("how much does the {p} cost??", "The {p} costs £{price} including VAT."),
    ("Is the {p} waterproof?", "The {p} is rated IP{ip}, so it handles rain but not submersion."),
    ("Where can I find the serial number of my {p}", "The serial number is printed under the {p} and in the app."),
    ("Can two people control the {p}?", "Yes, invite household members in the app to share the {p}."),
    ("My {p} is offline, what now?", "Restart your router, then power-cycle the {p} and wait two minutes."),
    ("Does the {p} ship to France?", "Yes, the {p} ships to the EU with DHL in 3-7 working days."),
]


def chat_rows() -> list[dict[str, str]]:
    """58 unique Q&A rows, 2 exact duplicates (one differing only in case/spacing), 2 empty rows."""
    rows = []
    for i, (p, (q, a)) in enumerate((p, qa) for qa in _QUESTIONS for p in _PRODUCTS):
        rows.append({"question": q.format(p=p), "answer": a.format(p=p, price=40 + 7 * i, ip=54 + i % 3)})
    rows = rows[:58]
    rows.insert(10, dict(rows[3]))  # exact duplicate
    rows.insert(20, {"question": "  " + rows[5]["question"].upper() + " ", "answer": rows[5]["answer"].upper()})
    rows.insert(30, {"question": "What about the delivery?", "answer": "   "})  # empty answer
    rows.insert(40, {"question": "", "answer": "An answer to nothing."})  # empty question
    return rows


_LABEL_TEXT = {
    "billing": [
        ("Charged twice", "I was charged twice for order {n} this month, please refund one payment."),
        ("Invoice request", "Could you send me the VAT invoice for order {n}? Our accountant needs it."),
        ("Subscription fee", "Why did my Protect subscription fee go up? Order {n} was on the old plan."),
    ],
    "shipping": [
        ("Where is my parcel", "Order {n} has not arrived yet and the tracking page has not moved in days."),
        ("Courier lost package", "DHL says order {n} was delivered but nothing is at my door."),
        ("Delivery address", "Can I change the delivery address for order {n} before it ships?"),
    ],
    "tech_support": [
        ("Camera offline", "My camera from order {n} keeps going offline every night after the update."),
        ("App crashes", "The app crashes when I open the live view for the device from order {n}."),
        ("Cannot pair", "The doorbell from order {n} will not pair with the hub, the light stays red."),
    ],
}


def ticket_rows() -> list[dict[str, str]]:
    """90 unique tickets, 30 per label, plus 2 exact duplicates, 1 empty-text row, 1 unlabelled row."""
    rows = []
    for label, templates in _LABEL_TEXT.items():
        for i in range(30):
            subject, body = templates[i % 3]
            n = f"ACM-{label[:2].upper()}{1000 + 37 * i}"
            rows.append({"subject": f"{subject} #{i}", "body": body.format(n=n), "queue": label})
    rows.insert(7, dict(rows[2]))
    rows.insert(50, dict(rows[40]))
    rows.insert(60, {"subject": "", "body": "", "queue": "billing"})
    rows.insert(70, {"subject": "No label here", "body": "This ticket was never triaged.", "queue": ""})
    return rows


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


def write_csv(path: Path, rows: list[dict], fieldnames: list[str] | None = None) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=fieldnames or list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def project_yaml(chat_model: str | Path, cls_model: str | Path, max_steps: int = 3) -> str:
    return f"""\
# A tiny two-task project for the test suite.
project: tiny-project
workspace: workspace
tasks:
  - name: {CHAT_TASK}
    type: chat_sft
    model: {chat_model}
    data:
      sources:
        - path: data/qa.jsonl
      columns: {{prompt: question, response: answer}}
      system_prompt: "You are the Acme Home support assistant. Answer briefly."
      split: {{validation: 0.1, test: 0.15, seed: 7}}
    method: {{kind: lora, r: 4, alpha: 8, dropout: 0.0, target_modules: all-linear}}
    train:
      max_steps: {max_steps}
      lr: 1.0e-3
      batch_size: 4
      max_length: 128
    eval:
      max_new_tokens: 8
      max_examples: 4
      batch_size: 4

  - name: {CLS_TASK}
    type: classification
    model: {cls_model}
    data:
      sources:
        - path: data/tickets.csv
      columns:
        text: [subject, body]
        label: queue
      split: {{validation: 0.1, test: 0.15, seed: 7}}
    label_descriptions:
      billing: "charges, refunds, invoices and subscription fees"
      shipping: "delivery, tracking, courier and parcel problems"
      tech_support: "a device or the app is not working"
    method: {{kind: lora, r: 4, alpha: 8, dropout: 0.0, target_modules: all-linear}}
    train:
      max_steps: {max_steps}
      lr: 1.0e-3
      batch_size: 8
      max_length: 128
    eval:
      max_examples: 9
      batch_size: 8
"""


def write_project(root: Path, chat_model: str | Path, cls_model: str | Path, max_steps: int = 3) -> Path:
    """Write tuneloom.yaml plus data/qa.jsonl and data/tickets.csv under `root`; returns the project file."""
    (root / "data").mkdir(parents=True, exist_ok=True)
    write_jsonl(root / "data" / "qa.jsonl", chat_rows())
    write_csv(root / "data" / "tickets.csv", ticket_rows())
    path = root / "tuneloom.yaml"
    path.write_text(project_yaml(chat_model, cls_model, max_steps), encoding="utf-8")
    return path


@pytest.fixture
def project_dir(tmp_path, tiny_llama_dir, tiny_bert_dir) -> Path:
    """A small two-task project (chat on the tiny Llama, classification on the tiny BERT)."""
    write_project(tmp_path, tiny_llama_dir, tiny_bert_dir)
    return tmp_path


@pytest.fixture
def data_project_dir(tmp_path) -> Path:
    """The same project with catalog model names: enough for config and data tests (no model loads)."""
    write_project(tmp_path, "smollm2-135m-instruct", "all-minilm-l6-v2")
    return tmp_path
