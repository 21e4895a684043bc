"""The playground's models and answers: base, latest tuned run and production of one task, answering the
same prompt through the serving backend; each answer is stored in the feedback store like a /v1 answer,
so ratings and corrections made in the console land where the API's do."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from tuneloom.artifacts import read_snapshot
from tuneloom.config import Project, TaskConfig
from tuneloom.errors import TuneloomError
from tuneloom.serve.engine import SamplingParams
from tuneloom.serve.responses import chat_prompt
from tuneloom.serve.targets import Kind, Target
from tuneloom.tasks import kind_of
from tuneloom.workspace import Workspace

SIDES = ("base", "tuned", "production")
MAX_PROMPT_CHARS = 4000


@dataclass
class Answer:
    side: str
    served: str
    text: str
    completion_id: str | None  # None when the side could not answer
    error: str | None = None


def targets(project: Project, task: TaskConfig, resolver: Any) -> dict[str, Target | str]:
    """Each side's model, or why it is not available (no completed run yet, nothing in production...)."""
    from tuneloom.catalog import resolve_model

    kind = cast(Kind, kind_of(task.type).serve_as or "chat")
    out: dict[str, Target | str] = {}
    system = getattr(task.data, "system_prompt", None)
    try:
        base = resolve_model(task.model)
        out["base"] = Target(name=task.name, served=f"{task.model} (base)", kind=kind, base_path=base, system_prompt=system)
    except TuneloomError as exc:
        out["base"] = str(exc)
    try:
        run = Workspace(project.workspace).run_dir(f"latest:{task.name}")
        snapshot = read_snapshot(run)
        model = run / "model"
        adapter = (model / "adapter_config.json").is_file()
        out["tuned"] = Target(
            name=task.name,
            served=f"run {run.name}",
            kind=kind,
            base_path=Path(snapshot.base_model_path) if adapter else model,
            adapter_path=model if adapter else None,
            system_prompt=system,
        )
    except (FileNotFoundError, TuneloomError) as exc:
        out["tuned"] = f"no completed run yet ({exc})"
    out["production"] = _production(task, resolver)
    return out


def _production(task: TaskConfig, resolver: Any) -> Target | str:
    from tuneloom.registry import RegistryError
    from tuneloom.serve.targets import UnknownModel

    name = task.registry_name or task.name
    if not resolver.has_registry():
        return "nothing registered yet"
    try:
        target: Target = resolver.resolve(f"{name}@production")
        return target
    except UnknownModel:  # its message speaks to API clients (GET /v1/models)
        return f"no version of {name} is in production yet: register and promote one on the Registry page"
    except (RegistryError, TuneloomError) as exc:
        return f"no production version ({str(exc).splitlines()[0]})"


@dataclass
class Retrieved:
    """The passages a knowledge-base task puts in the prompt, shown beside the answers."""

    knowledge: str
    sources: list[tuple[str, str, float, str]]  # (label, chunk id, score, passage as the prompt holds it), in prompt order
    messages: list[dict[str, str]]  # the chat as every side receives it


def retrieve(project: Project, task: TaskConfig, prompt: str, allowed_tags: frozenset[str] | None) -> Retrieved | None:
    """Search the task's knowledge base once, seeing only the chunks the logged-in key's access tags allow (as
    the API does), and build the prompt as training and serving do; None when the task retrieves from none."""
    if not (kind_of(task.type).takes_knowledge and task.knowledge):
        return None
    from tuneloom.knowledge import open_index
    from tuneloom.knowledge.prompting import clip, source_label, with_passages
    from tuneloom.knowledge.records import Filter

    index = open_index(project, task.knowledge)
    try:
        hits = index.search(prompt, k=task.rag.top_k, flt=Filter(allowed_tags=allowed_tags))
    finally:
        index.close()
    system = task.data.system_prompt
    messages = [{"role": "system", "content": system.strip()}] if system else []
    messages = with_passages([*messages, {"role": "user", "content": prompt}], [h.chunk for h in hits], task.rag.passage_chars)
    sources = [(source_label(h.chunk), h.chunk.chunk_id, h.score, clip(h.chunk.text, task.rag.passage_chars)) for h in hits]
    return Retrieved(task.knowledge, sources, messages)


async def answer(
    state: Any, target: Target, prompt: str, side: str, key_id: str, messages: list[dict[str, str]] | None = None
) -> Answer:
    """One side's answer to `prompt` (or to `messages`, retrieved passages included), stored as a completion
    (bodies only when serve.store_prompts is on)."""
    from starlette.concurrency import run_in_threadpool

    started = time.monotonic()
    settings = state.settings
    if target.kind == "classification":
        scores, _ = await run_in_threadpool(state.backend.classify, target, [prompt], settings.limits.max_prompt_tokens)
        label, p = max(scores[0].items(), key=lambda kv: kv[1])
        text, finish, n_prompt, n_out = f"{label} ({p:.2f})", "stop", 0, 0
        request: dict[str, Any] = {"input": prompt}
    else:
        tokenizer = await run_in_threadpool(state.backend.tokenizer, target)
        ids, messages = chat_prompt(tokenizer, messages or [{"role": "user", "content": prompt}], target.system_prompt)
        params = SamplingParams(max_tokens=min(128, settings.limits.max_tokens), temperature=0.0)
        generation = state.backend.start(target, ids, params, 1, time.monotonic() + settings.request_timeout_s)
        text, finish, n_out = "", None, 0
        async for event in generation.events():
            text += event.text
            n_out = event.completion_tokens
            finish = event.finish_reason or finish
        request, n_prompt = {"messages": messages}, len(ids)
    completion_id = f"console-{uuid.uuid4().hex}"
    response: Any = {"choices": [text]}
    if state.redactor is not None and settings.store_prompts:  # as the API stores its answers
        from tuneloom.data.redact import redact_json

        request, response = redact_json([request, response], state.redactor)
    await run_in_threadpool(
        state.feedback.record_completion,
        id=completion_id,
        endpoint="console",
        model=side,
        served=target.served,
        key_id=key_id,
        request=request if settings.store_prompts else None,
        response=response if settings.store_prompts else None,
        finish_reason=finish,
        prompt_tokens=n_prompt,
        completion_tokens=n_out,
        latency_ms=int((time.monotonic() - started) * 1000),
    )
    return Answer(side, target.served, text, completion_id)
