"""Chat SFT encoding with the real SmolLM2 tokenizer: the loss sees assistant tokens only."""

from __future__ import annotations

import pytest

from tuneloom.errors import ModelNotAvailable
from tuneloom.train import sft

IGNORE = -100
SYSTEM = "You are the Acme Home support assistant."
QUESTION = "Can I return the Cam Outdoor after 30 days?"
ANSWER = "No. Returns are accepted within 30 days of delivery only."


def _chat(*turns: str, system: str | None = SYSTEM) -> list[dict[str, str]]:
    msgs = [{"role": "system", "content": system}] if system else []
    for i, text in enumerate(turns):
        msgs.append({"role": "user" if i % 2 == 0 else "assistant", "content": text})
    return msgs


def _spans(labels: list[int]) -> list[tuple[int, int]]:
    """[start, end) index ranges of unmasked labels."""
    spans, start = [], None
    for i, lab in enumerate(labels + [IGNORE]):
        if lab != IGNORE and start is None:
            start = i
        elif lab == IGNORE and start is not None:
            spans.append((start, i))
            start = None
    return spans


def _strip_trailing_newline_token(tok, ids: list[int]) -> list[int]:
    return ids[:-1] if ids and tok.decode(ids[-1:]) == "\n" else ids


def test_tokenizer_has_chat_template_and_end_of_turn(smollm2_tokenizer):
    tok = smollm2_tokenizer
    assert tok.chat_template
    assert tok.eos_token == "<|im_end|>"
    assert tok.pad_token is not None


def test_labels_cover_the_answer(smollm2_tokenizer):
    tok = smollm2_tokenizer
    enc = sft.encode_chat(tok, _chat(QUESTION, ANSWER), max_length=512)
    ids, labels = enc["input_ids"], enc["labels"]
    assert len(ids) == len(labels) == len(enc["attention_mask"])
    assert set(enc["attention_mask"]) == {1}
    assert enc["truncated"] is False
    spans = _spans(labels)
    assert len(spans) == 1, spans
    start, end = spans[0]
    # unmasked labels are the input tokens themselves (the model shifts them)
    assert labels[start:end] == ids[start:end]
    decoded = tok.decode(labels[start:end])
    assert decoded.startswith(ANSWER + tok.eos_token)
    # at most the template's line break may follow the end-of-turn token
    assert decoded[len(ANSWER + tok.eos_token) :] in ("", "\n")
    # everything before the answer is the system and user turns plus the assistant header
    prefix = tok.decode(ids[:start])
    assert prefix.endswith("<|im_start|>assistant\n")
    assert SYSTEM in prefix and QUESTION in prefix
    assert all(lab == IGNORE for lab in labels[:start])
    assert all(lab == IGNORE for lab in labels[end:])


def test_labels_are_exactly_answer_plus_end_of_turn(smollm2_tokenizer):
    tok = smollm2_tokenizer
    enc = sft.encode_chat(tok, _chat(QUESTION, ANSWER), max_length=512)
    unmasked = [lab for lab in enc["labels"] if lab != IGNORE]
    assert tok.decode(unmasked) == ANSWER + tok.eos_token


def test_system_and_user_tokens_are_masked(smollm2_tokenizer):
    tok = smollm2_tokenizer
    msgs = _chat(QUESTION, ANSWER)
    enc = sft.encode_chat(tok, msgs, max_length=512)
    prompt_ids = tok.apply_chat_template(msgs[:-1], add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"]
    n = len(prompt_ids)
    assert enc["input_ids"][:n] == prompt_ids
    assert enc["labels"][:n] == [IGNORE] * n
    assert enc["labels"][n] == enc["input_ids"][n] != IGNORE  # the answer starts right after


def test_default_system_prompt_is_masked_too(smollm2_tokenizer):
    tok = smollm2_tokenizer
    enc = sft.encode_chat(tok, _chat(QUESTION, ANSWER, system=None), max_length=512)
    # SmolLM2's template adds its own system turn when none is given; none of it is trained on
    assert "You are a helpful AI assistant named SmolLM" in tok.decode(enc["input_ids"])
    ((start, end),) = _spans(enc["labels"])
    ids = _strip_trailing_newline_token(tok, enc["labels"][start:end])
    assert tok.decode(ids) == ANSWER + tok.eos_token


def test_multi_turn_masks_both_assistant_turns_only(smollm2_tokenizer):
    tok = smollm2_tokenizer
    first, second = "Hello! How can I help?", "The Cam Outdoor has a two year warranty."
    msgs = _chat("Hi there", first, "What is the warranty on the Cam Outdoor?", second)
    enc = sft.encode_chat(tok, msgs, max_length=512)
    ids, labels = enc["input_ids"], enc["labels"]
    spans = _spans(labels)
    assert len(spans) == 2, [tok.decode(labels[a:b]) for a, b in spans]
    answers = [tok.decode(_strip_trailing_newline_token(tok, labels[a:b])) for a, b in spans]
    assert answers == [first + tok.eos_token, second + tok.eos_token]
    masked_text = tok.decode([t for t, lab in zip(ids, labels) if lab == IGNORE])
    for text in (SYSTEM, "Hi there", "What is the warranty on the Cam Outdoor?"):
        assert text in masked_text
    for text in (first, second):
        assert text not in masked_text
    # the second user turn sits between the two answer spans, masked
    between = tok.decode(ids[spans[0][1] : spans[1][0]])
    assert "What is the warranty" in between and between.rstrip().endswith("<|im_start|>assistant")


def test_truncation_flag_and_length(smollm2_tokenizer):
    tok = smollm2_tokenizer
    msgs = _chat(QUESTION, ANSWER)
    full = sft.encode_chat(tok, msgs, max_length=4096)
    n = len(full["input_ids"])
    exact = sft.encode_chat(tok, msgs, max_length=n)
    assert exact["truncated"] is False and exact["input_ids"] == full["input_ids"]
    cut = sft.encode_chat(tok, msgs, max_length=n - 5)
    assert cut["truncated"] is True
    assert len(cut["input_ids"]) == len(cut["labels"]) == len(cut["attention_mask"]) == n - 5
    assert cut["input_ids"] == full["input_ids"][: n - 5]  # cut from the end
    assert cut["labels"] == full["labels"][: n - 5]


def test_encode_split_counts_truncated_and_drops_rows_without_answer_tokens(smollm2_tokenizer):
    tok = smollm2_tokenizer
    short = {"messages": _chat("Hi", "Hello.")}
    long_answer = {"messages": _chat("Tell me everything", "word " * 200)}
    long_question = {"messages": _chat("question " * 200, "Short answer.")}
    prompt_len = len(
        tok.apply_chat_template(short["messages"][:-1], add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"]
    )
    max_len = prompt_len + 40
    out, truncated, dropped = sft.encode_split(tok, [short, long_answer, long_question], max_len)
    assert dropped == 1  # the long question leaves no answer tokens
    assert truncated == 1  # the long answer is cut but still trains
    assert len(out) == 2
    assert all(len(e["input_ids"]) <= max_len for e in out)
    assert all("truncated" not in e for e in out)
    assert all(any(lab != IGNORE for lab in e["labels"]) for e in out)


def test_collator_pads_labels_with_ignore(smollm2_tokenizer):
    tok = smollm2_tokenizer
    rows = [{"messages": _chat("Hi", "Hello.")}, {"messages": _chat(QUESTION, ANSWER)}]
    encoded, _, _ = sft.encode_split(tok, rows, 512)
    batch = sft.collator(tok)([dict(e) for e in encoded])
    width = batch["input_ids"].shape[1]
    assert width % 8 == 0 and width >= max(len(e["input_ids"]) for e in encoded)
    short = len(encoded[0]["input_ids"])
    assert batch["labels"][0, short:].eq(IGNORE).all()
    assert batch["attention_mask"][0, short:].eq(0).all()
    assert batch["attention_mask"][0, :short].eq(1).all()


def test_load_tokenizer_without_chat_template_refused(minilm_dir):
    with pytest.raises(ModelNotAvailable) as info:
        sft.load_tokenizer(minilm_dir)
    assert "no chat template" in str(info.value) and "chat_template.jinja" in str(info.value)
