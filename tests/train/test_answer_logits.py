"""Vocabulary logits only at answer positions: same loss and gradients as the full-logits path."""

from __future__ import annotations

import pytest
import torch

from tuneloom.train import sft


@pytest.fixture(scope="module")
def batch_parts(tiny_llama_dir):
    from transformers import AutoModelForCausalLM

    tokenizer = sft.load_tokenizer(tiny_llama_dir)
    chats = [
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": q}, {"role": "assistant", "content": a}]
        for q, a in [
            ("Is the hub waterproof?", "No, keep it indoors."),
            ("How long is the warranty on the doorbell?", "Two years from delivery, parts and labour."),
            ("Hi", "Hello! How can I help?"),
        ]
    ]
    features = []
    for chat in chats:
        enc = sft.encode_chat(tokenizer, chat, 128)
        enc.pop("truncated")
        features.append(enc)
    torch.manual_seed(0)
    return tokenizer, AutoModelForCausalLM.from_pretrained(tiny_llama_dir, dtype=torch.float32), features


def test_collator_marks_answer_positions_and_targets(batch_parts):
    tokenizer, _, features = batch_parts
    batch = sft.collator(tokenizer, answer_logits_only=True)(features)
    keep, labels = batch["logits_to_keep"], batch["labels"]
    assert keep.dtype == torch.bool and keep.shape == labels.shape
    assert int(keep.sum()) == sum(sum(1 for x in f["labels"] if x != sft.IGNORE) for f in features)
    assert torch.equal(batch["shift_labels"], labels[:, 1:][keep[:, :-1]])  # the token after each kept position
    assert not keep[:, -1].any()


@pytest.mark.parametrize("normalised", [False, True])
def test_answer_only_logits_give_the_same_loss_and_gradients(batch_parts, normalised):
    tokenizer, model, features = batch_parts
    full, fast = (
        sft.collator(tokenizer, answer_logits_only=False)(features),
        sft.collator(tokenizer, answer_logits_only=True)(features),
    )
    extra = {"num_items_in_batch": int(fast["shift_labels"].numel())} if normalised else {}
    grads = []
    for batch in (full, fast):
        model.zero_grad()
        loss = model(**batch, **extra).loss
        loss.backward()
        grads.append((loss.detach(), model.model.layers[0].mlp.up_proj.weight.grad.clone()))
    assert grads[0][0] == pytest.approx(grads[1][0].item(), rel=1e-5)
    assert torch.allclose(grads[0][1], grads[1][1], rtol=1e-4, atol=1e-7)
    fast_logits = model(**fast).logits
    assert fast_logits.shape[:-1] == (int(fast["logits_to_keep"].sum()),)  # only the answer positions
