"""The server's routes, one router per concern."""

from __future__ import annotations

from fastapi import APIRouter

from tuneloom.serve.routes import chat, classify, embeddings, feedback, health, search

ROUTERS: tuple[APIRouter, ...] = (
    chat.router,
    embeddings.router,
    classify.router,
    feedback.router,
    health.router,
    search.router,
)
