"""The server's per-request limits (`serve.limits`): a request over one is answered 400."""

from __future__ import annotations

from tuneloom.config import ServeConfig
from tuneloom.serve.engine import SamplingParams
from tuneloom.serve.responses import ApiError
from tuneloom.serve.schemas import SamplingFields


def sampling(settings: ServeConfig, req: SamplingFields) -> tuple[SamplingParams, int]:
    """The sampling parameters and number of choices a request asks for, within the limits."""
    limits = settings.limits
    max_tokens = req.max_completion_tokens or req.max_tokens or limits.max_tokens
    if max_tokens > limits.max_tokens:
        raise ApiError(
            400, f"max_tokens {max_tokens} is over this server's limit of {limits.max_tokens}", code="max_tokens_over_limit"
        )
    if req.n > limits.max_n:
        raise ApiError(400, f"n {req.n} is over this server's limit of {limits.max_n}", code="n_over_limit")
    return SamplingParams(
        max_tokens=max_tokens, temperature=req.temperature, top_p=req.top_p, stop=req.stops(), seed=req.seed
    ), req.n


def check_prompt(settings: ServeConfig, ids: list[int]) -> None:
    if len(ids) > settings.limits.max_prompt_tokens:
        raise ApiError(
            400,
            f"the prompt has {len(ids)} tokens, over this server's limit of {settings.limits.max_prompt_tokens}",
            code="prompt_too_long",
        )


def check_inputs(settings: ServeConfig, texts: list[str]) -> None:
    if not texts or len(texts) > settings.limits.max_inputs:
        raise ApiError(400, f"input takes 1 to {settings.limits.max_inputs} texts", code="too_many_inputs")
