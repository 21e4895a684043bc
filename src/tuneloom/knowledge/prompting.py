"""How retrieved passages enter a chat prompt: ONE function for training, evaluation, `tuneloom ask` and serving.

A model tuned RAFT-style learns this exact layout, so every caller must build its prompt here: numbered
passages (with their document and section) before the question, in the last user turn. The system prompt
and earlier turns stay as they are.
"""

from __future__ import annotations

from collections.abc import Sequence

from tuneloom.knowledge.records import Chunk

INSTRUCTION = "Answer the question. Use the sources above when they contain the answer."


def source_label(chunk: Chunk) -> str:
    """`doc > section > subsection`: where a passage comes from, as the prompt and the terminal show it."""
    return " > ".join([chunk.doc_id, *chunk.section])


def clip(text: str, max_chars: int) -> str:
    """`text` cut at a word boundary to at most `max_chars` characters (an ellipsis marks the cut)."""
    text = text.strip()
    if len(text) <= max_chars:
        return text
    cut = text[: max_chars - 1]
    space = cut.rfind(" ")
    return (cut[:space] if space > max_chars // 2 else cut).rstrip() + "…"


def passages_block(passages: Sequence[Chunk], max_chars: int) -> str:
    """The numbered passages as they appear in a prompt: `[1] doc > section` then the text, one blank line apart."""
    return "\n\n".join(f"[{i}] {source_label(c)}\n{clip(c.text, max_chars)}" for i, c in enumerate(passages, 1))


def with_passages(messages: Sequence[dict[str, str]], passages: Sequence[Chunk], max_chars: int) -> list[dict[str, str]]:
    """The conversation with `passages` put before the question in its last user turn.

    `messages` ends with a user turn (a prompt to answer) or with an assistant turn (a training example, whose
    answer stays after the rewritten question). No passages: the conversation unchanged.
    """
    out = [dict(m) for m in messages]
    if not passages:
        return out
    last_user = max((i for i, m in enumerate(out) if m["role"] == "user"), default=None)
    if last_user is None:
        raise ValueError("a conversation to put passages into needs a user turn")
    question = out[last_user]["content"]
    block = passages_block(passages, max_chars)
    out[last_user] = {"role": "user", "content": f"Sources:\n{block}\n\n{INSTRUCTION}\nQuestion: {question}"}
    return out
