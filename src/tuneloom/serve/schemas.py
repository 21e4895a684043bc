"""Request and response bodies of the OpenAI-compatible API (the subset Tuneloom serves), plus feedback.

Requests ignore fields the OpenAI API has and Tuneloom does not use (`user`, `logit_bias`, ...), as
OpenAI-compatible servers commonly do, so existing clients work unchanged; fields it does use are
validated strictly.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore")


class ContentPart(Lenient):
    type: Literal["text"]
    text: str


class ChatMessage(Lenient):
    role: Literal["system", "user", "assistant", "developer"]
    content: str | list[ContentPart]

    def text(self) -> str:
        return self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)


class StreamOptions(Lenient):
    include_usage: bool = False


class SamplingFields(Lenient):
    model: str
    max_tokens: int | None = Field(None, gt=0)
    max_completion_tokens: int | None = Field(None, gt=0)
    temperature: float = Field(1.0, ge=0.0, le=2.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    n: int = Field(1, ge=1)
    stop: str | list[str] | None = None
    seed: int | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None

    @field_validator("stop")
    @classmethod
    def _stops(cls, value: str | list[str] | None) -> str | list[str] | None:
        stops = [value] if isinstance(value, str) else value or []
        if len(stops) > 4 or any(not s for s in stops):
            raise ValueError("stop takes at most 4 non-empty strings")
        return value

    def stops(self) -> list[str]:
        return [self.stop] if isinstance(self.stop, str) else list(self.stop or [])


class ChatCompletionRequest(SamplingFields):
    messages: list[ChatMessage] = Field(min_length=1)


class CompletionRequest(SamplingFields):
    prompt: str


class EmbeddingRequest(Lenient):
    model: str
    input: str | list[str]
    encoding_format: Literal["float", "base64"] = "float"  # base64: little-endian float32, as OpenAI

    def texts(self) -> list[str]:
        return [self.input] if isinstance(self.input, str) else self.input


class ClassifyRequest(Lenient):
    model: str
    input: str | list[str]

    def texts(self) -> list[str]:
        return [self.input] if isinstance(self.input, str) else self.input


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    completion_id: str = Field(min_length=1, max_length=64)
    rating: Literal["up", "down"] | int = Field(description="'up' / 'down', or 1 to 5")
    correction: str | None = Field(None, max_length=20_000, description="The answer it should have given.")
    tags: list[str] = Field(default_factory=list, max_length=20)

    @field_validator("rating")
    @classmethod
    def _rating(cls, value: str | int) -> str | int:
        if isinstance(value, int) and not 1 <= value <= 5:
            raise ValueError("a numeric rating is 1 to 5")
        return value

    @field_validator("tags")
    @classmethod
    def _tags(cls, tags: list[str]) -> list[str]:
        if any(not t or len(t) > 64 for t in tags):
            raise ValueError("tags are 1 to 64 characters")
        return tags


class SearchRequest(BaseModel):
    """POST /v1/search: retrieval only, from a knowledge base by name or from a chat model's knowledge base."""

    model_config = ConfigDict(extra="forbid")

    knowledge: str | None = Field(None, max_length=64, description="A knowledge base of the project.")
    model: str | None = Field(None, max_length=200, description="Or a served chat model: its knowledge base.")
    query: str = Field(min_length=1, max_length=20_000)
    k: int | None = Field(None, ge=1, le=100, description="Results; default: the knowledge base's retrieval.top_k.")
    where: dict[str, str] = Field(default_factory=dict, description="Exact metadata matches.")

    @model_validator(mode="after")
    def _one_source(self) -> SearchRequest:
        if (self.knowledge is None) == (self.model is None):
            raise ValueError("name exactly one of `knowledge` (a knowledge base) or `model` (a chat model)")
        return self
