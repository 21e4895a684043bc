"""Optional LLM-as-judge: an OpenAI-compatible chat endpoint grades answers from 1 to 5 against a rubric.

Nothing here runs unless a project configures a judge: it is the only part of evaluation that sends
data over the network, to the URL the project names (often a local server such as vLLM or
llama.cpp). The API key, when one is needed, is read from the environment variable that the
config names; it goes into the Authorization header and nowhere else (never into logs, errors
or results).

Each item is judged on its own: a timeout, an HTTP error or a reply that cannot be read becomes a
`JudgeScore` with `error` set, never an exception, so one bad reply cannot sink an evaluation.
429 and 5xx answers and network errors (timeouts included) are retried a bounded number of
times with exponential backoff (honouring a `Retry-After` of up to 10 seconds).
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import BaseModel, Field

from tuneloom.config import DEFAULT_RUBRIC, JudgeConfig

if TYPE_CHECKING:
    import httpx2  # imported where requests are made, so importing JudgeConfig stays light

__all__ = [
    "DEFAULT_RUBRIC",
    "JudgeConfig",
    "JudgeScore",
    "judge_answers",
    "judge_from_config",
    "judge_sides",
    "judge_summary",
    "parse_judge_reply",
]

log = logging.getLogger(__name__)


_SYSTEM = """You grade answers to questions. Compare the answer with the reference answer and score it from 1 (worst) to 5 (best) using this rubric:

{rubric}

Judge the meaning, not the wording: a different phrasing of the reference is as good as the reference.
Reply with a JSON object and nothing else: {{"score": <integer 1-5>, "reason": "<one short sentence>"}}"""

_USER = "Question:\n{question}\n\nReference answer:\n{reference}\n\nAnswer to grade:\n{answer}"

_MAX_SLEEP_S = 10.0  # cap on any one wait between attempts, Retry-After included


class JudgeScore(BaseModel):
    """The judge's verdict on one answer; `score` is None exactly when `error` says why."""

    score: Annotated[int, Field(ge=1, le=5)] | None = None
    reason: str = ""
    error: str | None = None


# --------------------------------------------------------------------------------------------
# reading the reply

_FENCE = re.compile(r"```[A-Za-z0-9_-]*\s*\n?(.*?)```", re.DOTALL)
_OBJECT = re.compile(r"\{.*\}", re.DOTALL)
_BARE = re.compile(r"^\s*(?:score\s*[:=]\s*)?(\d+(?:\.0+)?)\s*(?:/\s*5|out of 5)?\s*\.?\s*$", re.IGNORECASE)


def _as_score(value: Any) -> int | None:
    """An integer 1..5 from an int, an integral float or a numeric string; None otherwise."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        m = _BARE.match(value)
        if not m:
            return None
        value = float(m.group(1))
    if isinstance(value, (int, float)) and float(value).is_integer() and 1 <= value <= 5:
        return int(value)
    return None


def parse_judge_reply(text: str | None) -> tuple[int, str]:
    """(score, reason) from the judge's message; raises ValueError when no 1-5 score can be read.

    Accepted: a JSON object with "score" (and optionally "reason"), the same inside a Markdown
    code fence or surrounded by a little prose, or a bare number ("4", "4/5", "Score: 4").
    """
    if text is None or not text.strip():
        raise ValueError("empty reply")
    candidates = [text.strip()]
    candidates += [m.strip() for m in _FENCE.findall(text)]
    obj = _OBJECT.search(text)
    if obj:
        candidates.append(obj.group(0))
    for candidate in candidates:
        try:
            data = json.loads(candidate)
        except ValueError:
            data = candidate
        if isinstance(data, dict) and "score" in data:
            score = _as_score(data["score"])
            if score is None:
                raise ValueError(f"score {data['score']!r} is not an integer from 1 to 5")
            reason = data.get("reason")
            if reason is None:
                reason = ""
            return score, reason.strip() if isinstance(reason, str) else json.dumps(reason)
        score = _as_score(data)
        if score is not None:
            return score, ""
    raise ValueError(f"no score from 1 to 5 in the reply: {_snippet(text)}")


def _snippet(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return repr(text if len(text) <= limit else text[:limit] + "...")


# --------------------------------------------------------------------------------------------
# talking to the endpoint


def _redact(text: str, secret: str | None) -> str:
    return text.replace(secret, "***") if secret else text


def _wait_s(response: httpx2.Response | None, attempt: int, backoff_s: float) -> float:
    wait = backoff_s * (2**attempt)
    if response is not None:
        try:
            wait = max(wait, float(response.headers.get("retry-after", "")))
        except ValueError:
            pass
    return min(wait, _MAX_SLEEP_S)


def _judge_one(
    client: httpx2.Client, endpoint: str, payload: dict[str, Any], key: str | None, max_retries: int, backoff_s: float, index: int
) -> JudgeScore:
    import httpx2

    attempts = max(0, max_retries) + 1
    for attempt in range(attempts):
        response: httpx2.Response | None = None
        try:
            response = client.post(endpoint, json=payload)
        except httpx2.TransportError as exc:
            problem = f"{type(exc).__name__}: {exc}"
        else:
            if response.is_success:
                break
            body = _snippet(response.text)
            problem = f"HTTP {response.status_code}: {body}"
            if response.status_code != 429 and response.status_code < 500:
                return JudgeScore(error=_redact(problem, key))
        if attempt == attempts - 1:
            return JudgeScore(error=_redact(f"{problem} (gave up after {attempt + 1} attempts)", key))
        wait = _wait_s(response, attempt, backoff_s)
        log.info("judge item %d: %s; retrying in %.2fs", index, _redact(problem, key), wait)
        time.sleep(wait)
    assert response is not None  # the loop only ends without returning on a successful response
    try:
        content = response.json()["choices"][0]["message"]["content"]
        if content is not None and not isinstance(content, str):
            raise TypeError("content is not text")
    except (ValueError, KeyError, IndexError, TypeError):
        return JudgeScore(error=_redact(f"not a chat-completions response: {_snippet(response.text)}", key))
    try:
        score, reason = parse_judge_reply(content)
    except ValueError as exc:
        return JudgeScore(error=_redact(f"unreadable judge reply: {exc}", key))
    return JudgeScore(score=score, reason=_redact(reason, key))


def judge_answers(
    items: list[dict[str, str]],
    url: str,
    model: str,
    rubric: str = DEFAULT_RUBRIC,
    api_key_env: str | None = None,
    timeout: float = 30,
    max_workers: int = 4,
    *,
    max_retries: int = 3,
    backoff_s: float = 0.5,
    max_tokens: int = 256,
) -> list[JudgeScore]:
    """Score each `{"question", "reference", "answer"}` item from 1 to 5; one JudgeScore per item, in order.

    POSTs `{url}/chat/completions` (temperature 0) with the rubric in the system prompt. A failed
    item gets `error` set instead of a score. When `api_key_env` names an environment variable
    that is unset or empty, no request is sent and every item carries that error.
    """
    import httpx2

    if not items:
        return []
    key: str | None = None
    if api_key_env:
        key = os.environ.get(api_key_env, "").strip() or None
        if key is None:
            message = f"environment variable {api_key_env} (judge API key) is not set"
            log.warning("judge: %s; no answers were judged", message)
            return [JudgeScore(error=message) for _ in items]
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    endpoint = url.rstrip("/") + "/chat/completions"
    system = _SYSTEM.format(rubric=rubric.strip())

    def payload(item: dict[str, str]) -> dict[str, Any]:
        user = _USER.format(
            question=str(item.get("question", "")).strip(),
            reference=str(item.get("reference", "")).strip(),
            answer=str(item.get("answer", "")).strip() or "(no answer)",
        )
        return {
            "model": model,
            "messages": [{"role": "system", "content": system}, {"role": "user", "content": user}],
            "temperature": 0,
            "max_tokens": max_tokens,
        }

    def run(index: int, item: dict[str, str]) -> JudgeScore:
        try:
            result = _judge_one(client, endpoint, payload(item), key, max_retries, backoff_s, index)
        except Exception as exc:  # anything unexpected still only fails this item
            result = JudgeScore(error=_redact(f"{type(exc).__name__}: {exc}", key))
        if result.error:
            log.warning("judge item %d failed: %s", index, result.error)
        return result

    with httpx2.Client(headers=headers, timeout=timeout) as client:
        with ThreadPoolExecutor(max_workers=max(1, min(max_workers, len(items)))) as pool:
            return list(pool.map(run, range(len(items)), items))


def judge_from_config(items: list[dict[str, str]], config: JudgeConfig, **kwargs: Any) -> list[JudgeScore]:
    """`judge_answers` with a project's JudgeConfig; only the first `max_examples` items are judged."""
    if config.max_examples is not None:
        items = items[: config.max_examples]
    return judge_answers(items, config.url, config.model, config.rubric, config.api_key_env, config.timeout_s, **kwargs)


def judge_summary(scores: list[JudgeScore]) -> dict[str, Any]:
    """Mean score over the judged items (None when none was), with how many were scored and failed."""
    scored = [s.score for s in scores if s.score is not None]
    return {
        "mean": sum(scored) / len(scored) if scored else None,
        "n_scored": len(scored),
        "n_failed": len(scores) - len(scored),
    }


def judge_sides(result: dict[str, Any], config: JudgeConfig) -> dict[str, Any]:
    """LLM-as-judge mean scores (1-5) of each side's answers; added to each side as the metric `judge_score`."""
    out = {}
    for side in ("base", "tuned", "production"):
        if side == "production" and "production" not in result:
            continue
        items = [{"question": e["question"], "reference": e["reference"], "answer": e[side]} for e in result["examples"]]
        out[side] = judge_summary(judge_from_config(items, config))
        if out[side]["mean"] is not None:
            result[side]["judge_score"] = out[side]["mean"]
    return out
