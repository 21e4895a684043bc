"""`tuneloom serve`: an OpenAI-compatible server for the registry's models.

    app.py        FastAPI routes (chat, completions, embeddings, classify, feedback, models, health, metrics)
    responses.py  generation events -> OpenAI answers and SSE chunks; the chat prompt as in training
    schemas.py    request bodies
    targets.py    model names -> registry versions, catalog base models, project folders
    engine.py     continuous batching with per-sequence LoRA adapters (transformers)
    adapters.py   many adapters on one base, LRU under a memory budget
    backends.py   transformers and vLLM
    auth.py       hashed, model-scoped API keys
    feedback.py   completions and feedback in SQL (SQLite or PostgreSQL)
    metrics.py    Prometheus metrics
"""

from typing import Any

__all__ = ["create_app", "serve"]


def __getattr__(name: str) -> Any:  # FastAPI loads only when the server is wanted (the engine runs without it)
    if name in __all__:
        from tuneloom.serve import app

        return getattr(app, name)
    raise AttributeError(name)
