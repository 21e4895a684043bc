"""`ask`: answer one question with a chat model and a knowledge base, and say which passages it was given.

The Python API behind `tuneloom ask`. The prompt is built by `tuneloom.knowledge.prompting`, exactly as in
training, evaluation and serving, with the rag settings and system prompt of the chat task that names the
knowledge base.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneloom.catalog import CATALOG
from tuneloom.config import Project, RagConfig, TaskConfig
from tuneloom.errors import TuneloomError
from tuneloom.knowledge.prompting import with_passages
from tuneloom.knowledge.records import Filter, Hit
from tuneloom.tasks import kind_of
from tuneloom.workspace import Workspace


@dataclass(frozen=True)
class Answer:
    """A generated answer, the passages its prompt held (numbered from 1, in prompt order) and who answered."""

    question: str
    answer: str
    sources: list[Hit]
    model: str
    knowledge: str


@dataclass(frozen=True)
class ChatModel:
    """A loaded chat model and tokenizer, and the reference that picked it (for the terminal)."""

    model: Any
    tokenizer: Any
    label: str


def knowledge_task(project: Project, knowledge: str | None, task: str | None) -> TaskConfig | None:
    """The task whose rag settings and system prompt `ask` uses: the named one, else the first that retrieves
    from `knowledge` (or from any knowledge base when none is named); None when no task does."""
    if task is not None:
        return project.config.task(task)
    for t in project.config.tasks:
        if kind_of(t.type).takes_knowledge and t.knowledge and knowledge in (None, t.knowledge):
            return t
    return None


def _load(model_dir: Path, base: Path | str, method: str, precision: str, trust: bool, label: str) -> ChatModel:
    from tuneloom.inference import load_trained
    from tuneloom.train import sft

    model = load_trained("causal_lm", model_dir, base, method, precision, [], trust)
    return ChatModel(model, sft.load_tokenizer(model_dir, trust), label)


def load_chat_model(project: Project, task: TaskConfig | None, ref: str | None) -> ChatModel:
    """`ref`: a run (id, folder, latest[:TASK]), a catalog base model, or a registry reference (`name`, `name:N`,
    `name@alias`). No ref: the task's production version, else its latest completed run."""
    from tuneloom.train.common import choose_precision

    ws = Workspace(project.workspace)
    if ref is None:
        if task is None:
            raise TuneloomError("no chat task names this knowledge base: give the model to ask with --model")
        from tuneloom.registry.lookup import production_for

        production = production_for(project, task)
        ref = f"{production.name}@production" if production is not None else f"latest:{task.name}"
    if ref in CATALOG:
        from tuneloom.catalog import resolve_model
        from tuneloom.inference import load_base
        from tuneloom.train import sft

        path = resolve_model(ref)
        return ChatModel(load_base("causal_lm", path, choose_precision("auto"), [], False), sft.load_tokenizer(path), ref)
    try:
        run = ws.run_dir(ref)
    except FileNotFoundError:
        run = None
    if run is not None:
        from tuneloom.artifacts import read_snapshot

        snap = read_snapshot(run)
        trust = bool(snap.task.get("trust_remote_code", False))
        return _load(run / "model", snap.base_model_path, snap.task["method"]["kind"], snap.precision, trust, run.name)
    from tuneloom.registry.lookup import registry_for

    version = registry_for(project).resolve(ref)
    base = version.lineage.get("base_model_path") or version.lineage.get("base_model", "")
    method = version.lineage.get("method", "lora")
    return _load(version.path, base, method, choose_precision("auto"), False, f"{version.name}:{version.version}")


def generate(chat: ChatModel, messages: list[dict[str, str]], max_new_tokens: int) -> str:
    """A greedy answer to `messages`."""
    import torch

    prompt = chat.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    batch = chat.tokenizer(prompt, return_tensors="pt", add_special_tokens=False).to(chat.model.device)
    with torch.inference_mode():
        out = chat.model.generate(
            **batch,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=chat.tokenizer.pad_token_id,
            eos_token_id=chat.tokenizer.eos_token_id,
        )
    return str(chat.tokenizer.decode(out[0, batch["input_ids"].shape[1] :], skip_special_tokens=True)).strip()


def ask(
    project: Project,
    question: str,
    *,
    model: str | None = None,
    knowledge: str | None = None,
    task: str | None = None,
    flt: Filter = Filter(),
) -> Answer:
    """Retrieve passages for `question` from the knowledge base, put them in the prompt and answer."""
    from tuneloom.knowledge import open_index

    if not question.strip():
        raise TuneloomError('the question is empty: ask something, e.g. tuneloom ask "How long is the warranty?"')
    chosen = knowledge_task(project, knowledge, task)
    name = knowledge or (chosen.knowledge if chosen else None)
    if name is None:
        raise TuneloomError("no knowledge base to ask: name one with --knowledge or set `knowledge:` on a chat task")
    rag = chosen.rag if chosen else RagConfig()
    index = open_index(project, name)
    try:
        hits = index.search(question, k=rag.top_k, flt=flt)
    finally:
        index.close()
    messages = [{"role": "system", "content": chosen.data.system_prompt.strip()}] if chosen and chosen.data.system_prompt else []
    messages = with_passages([*messages, {"role": "user", "content": question}], [h.chunk for h in hits], rag.passage_chars)
    chat = load_chat_model(project, chosen, model)
    max_new = chosen.eval.max_new_tokens if chosen else 96
    return Answer(question=question, answer=generate(chat, messages, max_new), sources=hits, model=chat.label, knowledge=name)
