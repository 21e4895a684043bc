"""`tuneloom serve`: an OpenAI-compatible server for the registry's models.

app.py             create_app: state, middleware and routers put together; serve runs it
state.py           what one server holds (backend, targets, keys, feedback store, metrics, settings)
dependencies.py    API key, admission and model resolution as FastAPI dependencies
routes/            chat + completions, embeddings, classify, feedback, models/health/ready/metrics
middleware.py      body limit, metrics and access log
error_handlers.py  exceptions -> OpenAI error bodies
limits.py          per-request limits (serve.limits)
recording.py       each answer stored for feedback
responses.py       generation events -> OpenAI answers and SSE chunks; the chat prompt as in training
schemas.py         request bodies
targets.py         model names -> registry versions, catalog base models, project folders
engine.py          continuous batching with per-sequence LoRA adapters (transformers)
adapters.py        many adapters on one base, LRU under a memory budget
backends.py        transformers and vLLM
auth.py            hashed, model-scoped API keys
feedback.py        completions and feedback in SQL (SQLite or PostgreSQL)
metrics.py         Prometheus metrics
"""

from typing import Any

__all__ = ["create_app", "serve"]


def __getattr__(name: str) -> Any:  # FastAPI loads only when the server is wanted (the engine runs without it)
    if name in __all__:
        from tuneloom.serve import app

        return getattr(app, name)
    raise AttributeError(name)
