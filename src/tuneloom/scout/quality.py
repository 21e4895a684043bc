"""Baseline quality before tuning, with the evaluation stage's own metrics.

Chat: loss and perplexity on the reference answers, token F1 and ROUGE-L of zero-shot and few-shot
answers. Classification: a linear probe on mean-pooled embeddings (every model), plus zero-shot:
label-description similarity for encoders, the likeliest label name after a prompt for decoders.
Perplexity on raw domain text for decoders.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from tuneloom.evaluate.chat import answer_losses, generate_answers
from tuneloom.evaluate.classify import embed
from tuneloom.evaluate.metrics import classification_scores, mean_scores, per_example_scores
from tuneloom.pooled_head import pool


def with_shots(row: dict[str, Any], shots: list[dict[str, Any]]) -> dict[str, Any]:
    """The row's conversation with the shots' question/answer turns after its system message."""
    msgs = row["messages"]
    head = msgs[:1] if msgs[0]["role"] == "system" else []
    turns = [m for s in shots for m in s["messages"] if m["role"] != "system"]
    return {**row, "messages": head + turns + msgs[len(head) :]}


def chat_quality(
    model: Any,
    tokenizer: Any,
    rows: list[dict[str, Any]],
    shots: list[dict[str, Any]],
    max_length: int,
    max_new_tokens: int,
    batch_size: int,
) -> dict[str, float]:
    losses = answer_losses(model, tokenizer, rows, max_length, batch_size)
    loss = sum(s for s, _ in losses) / max(sum(c for _, c in losses), 1)
    refs = [r["messages"][-1]["content"] for r in rows]
    out = {"loss": loss, "perplexity": math.exp(min(loss, 50.0))}
    settings = [("zero_shot", rows)] + ([("few_shot", [with_shots(r, shots) for r in rows])] if shots else [])
    for name, prompts in settings:
        answers, _, _ = generate_answers(model, tokenizer, prompts, max_new_tokens, batch_size, lambda n: None)
        scores = mean_scores(per_example_scores(answers, refs))
        out[f"{name}_token_f1"], out[f"{name}_rouge_l"] = scores["token_f1"], scores["rouge_l"]
    return out


@torch.inference_mode()
def decoder_embed(model: Any, tokenizer: Any, texts: list[str], max_length: int, batch_size: int) -> torch.Tensor:
    """Mean-pooled, L2-normalised last hidden states of a causal LM (same recipe as `embed` for encoders)."""
    tokenizer.padding_side = "right"
    out = []
    for i in range(0, len(texts), batch_size):
        batch = tokenizer(
            texts[i : i + batch_size], padding=True, truncation=True, max_length=max_length, return_tensors="pt"
        ).to(model.device)
        hidden = model(**batch, output_hidden_states=True).hidden_states[-1]
        pooled = pool(hidden, batch["attention_mask"], "mean")
        out.append(torch.nn.functional.normalize(pooled.float(), dim=-1).cpu())
    return torch.cat(out)


def zero_shot_prompt(tokenizer: Any, text: str, labels: list[str]) -> str:
    question = (
        f"Classify this message into exactly one of these categories: {', '.join(labels)}.\n\n"
        f"Message: {text}\n\nAnswer with the category only."
    )
    if tokenizer.chat_template:
        return tokenizer.apply_chat_template([{"role": "user", "content": question}], add_generation_prompt=True, tokenize=False)
    return question + "\nCategory:"


@torch.inference_mode()
def decoder_zero_shot(model: Any, tokenizer: Any, texts: list[str], labels: list[str], max_length: int) -> list[str]:
    """Per text, the label whose tokens the model finds likeliest after the prompt (mean log-probability)."""
    tokenizer.padding_side = "right"
    label_ids = [tokenizer(" " + label.replace("_", " "), add_special_tokens=False)["input_ids"] for label in labels]
    preds = []
    for text in texts:
        prompt_ids = tokenizer(zero_shot_prompt(tokenizer, text, labels), add_special_tokens=False)["input_ids"]
        prompt_ids = prompt_ids[-(max_length - max(map(len, label_ids))) :]
        seqs = [prompt_ids + ids for ids in label_ids]
        width = max(map(len, seqs))
        pad = tokenizer.pad_token_id or 0
        ids = torch.tensor([s + [pad] * (width - len(s)) for s in seqs], device=model.device)
        mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in seqs], device=model.device)
        logprobs = model(input_ids=ids, attention_mask=mask).logits.float().log_softmax(-1)
        scores = []
        for row, lab in enumerate(label_ids):
            start = len(prompt_ids)
            positions = torch.arange(start - 1, start - 1 + len(lab), device=model.device)
            scores.append(float(logprobs[row, positions, torch.tensor(lab, device=model.device)].mean()))
        preds.append(labels[int(np.argmax(scores))])
    return preds


def classification_quality(
    model: Any,
    tokenizer: Any,
    decoder: bool,
    rows: list[dict[str, Any]],
    probe_rows: list[dict[str, Any]],
    labels: list[str],
    descriptions: dict[str, str],
    max_length: int,
    batch_size: int,
) -> dict[str, float]:
    from sklearn.linear_model import LogisticRegression

    def vectors(texts: list[str]) -> np.ndarray:
        if decoder:
            return decoder_embed(model, tokenizer, texts, max_length, batch_size).numpy()
        return embed(model, tokenizer, texts, max_length, batch_size).cpu().numpy()

    texts, truth = [r["text"] for r in rows], [r["label"] for r in rows]
    probe = LogisticRegression(max_iter=2000, class_weight="balanced")
    probe.fit(vectors([r["text"] for r in probe_rows]), [r["label"] for r in probe_rows])
    probe_scores = classification_scores(truth, list(probe.predict(vectors(texts))), labels)
    if decoder:
        zero = decoder_zero_shot(model, tokenizer, texts, labels, max_length)
    else:
        label_vecs = vectors([descriptions.get(label, label.replace("_", " ")) for label in labels])
        zero = [labels[i] for i in (vectors(texts) @ label_vecs.T).argmax(-1).tolist()]
    zero_scores = classification_scores(truth, zero, labels)
    return {
        "probe_accuracy": probe_scores["accuracy"],
        "probe_macro_f1": probe_scores["macro_f1"],
        "zero_shot_accuracy": zero_scores["accuracy"],
        "zero_shot_macro_f1": zero_scores["macro_f1"],
    }


@torch.inference_mode()
def text_perplexity(model: Any, tokenizer: Any, text: str, window: int, max_tokens: int = 4096) -> float:
    """Perplexity of a causal LM on raw text, in non-overlapping windows, over at most `max_tokens` tokens."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"][:max_tokens]
    total, count = 0.0, 0
    for i in range(0, len(ids) - 1, window):
        chunk = torch.tensor([ids[i : i + window]], device=model.device)
        if chunk.shape[1] < 2:
            break
        loss = model(input_ids=chunk, labels=chunk).loss
        total += float(loss) * (chunk.shape[1] - 1)
        count += chunk.shape[1] - 1
    return math.exp(min(total / max(count, 1), 50.0))
