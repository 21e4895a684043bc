"""`tuneloom serve`: an OpenAI-compatible server for the registry's models.

    app.py        FastAPI routes (chat, completions, embeddings, classify, feedback, models, health, metrics)
    schemas.py    request bodies
    targets.py    model names -> registry versions, catalog base models, project folders
    engine.py     continuous batching with per-sequence LoRA adapters (transformers)
    adapters.py   many adapters on one base, LRU under a memory budget
    backends.py   transformers and vLLM
    auth.py       hashed, model-scoped API keys
    feedback.py   completions and feedback in SQL (SQLite or PostgreSQL)
    metrics.py    Prometheus metrics
"""

from tuneloom.serve.app import create_app, serve

__all__ = ["create_app", "serve"]
