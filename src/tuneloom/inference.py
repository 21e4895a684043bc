"""Loading a trained model for inference: the one place that knows full weights vs an adapter on its base.

    model = load_trained("sequence_classification", run / "model", base_path, "lora", "bf16", labels, False)

Heads (sequence and token classification) keep fp32 weights, as training does; causal LMs load in the
run's precision. A classifier trained on pooled embeddings (a folder with `pooled_head.json`, see
`tuneloom.pooled_head`) is rebuilt from that file, whatever `method` says. torch and transformers are imported inside the functions, so the CLI stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from tuneloom.tasks.base import InferenceHead

HEAD_SEED = 0  # the untrained tagging head of the NER baseline is drawn from this seed
POOLED_HEAD_FILE = "pooled_head.json"  # marks a classifier on pooled embeddings (tuneloom.pooled_head)


def is_pooled(model_dir: Path | str | None) -> bool:
    """Whether `model_dir` holds a classifier on pooled embeddings (see `tuneloom.pooled_head`)."""
    return model_dir is not None and (Path(model_dir) / POOLED_HEAD_FILE).is_file()


def model_dtype(precision: str) -> torch.dtype:
    """The weight dtype of a precision name: bfloat16 for "bf16", float32 otherwise."""
    import torch

    return torch.bfloat16 if precision == "bf16" else torch.float32


def load_tokenizer(path: Path | str, trust_remote_code: bool = False) -> Any:
    """The folder's tokenizer, padding with the end-of-text token when it has no pad token."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def _label_maps(labels: list[str]) -> dict[str, Any]:
    return {
        "num_labels": len(labels),
        "id2label": dict(enumerate(labels)),
        "label2id": {label: i for i, label in enumerate(labels)},
    }


def _set_pad(model: Any, pad_token_id: int | None) -> Any:
    if model.config.pad_token_id is None and pad_token_id is not None:
        model.config.pad_token_id = pad_token_id
    return model


def classifier_head(
    path: Path | str,
    labels: list[str],
    trust_remote_code: bool,
    multi_label: bool = False,
    pad_token_id: int | None = None,
    **kwargs: Any,
) -> Any:
    """`path`'s model with a sequence-classification head over `labels` (fp32 unless `dtype=` says otherwise)."""
    from transformers import AutoModelForSequenceClassification

    kwargs.setdefault("dtype", model_dtype("fp32"))
    model = AutoModelForSequenceClassification.from_pretrained(
        path,
        **_label_maps(labels),
        trust_remote_code=trust_remote_code,
        problem_type="multi_label_classification" if multi_label else "single_label_classification",
        **kwargs,
    )
    return _set_pad(model, pad_token_id)


def tagger_head(path: Path | str, tags: list[str], trust_remote_code: bool, pad_token_id: int | None = None) -> Any:
    """`path`'s model with a token-classification head over `tags` (fp32)."""
    from transformers import AutoModelForTokenClassification

    model = AutoModelForTokenClassification.from_pretrained(
        path,
        **_label_maps(tags),
        dtype=model_dtype("fp32"),
        trust_remote_code=trust_remote_code,
    )
    return _set_pad(model, pad_token_id)


def base_tagger(base_path: Path | str, tags: list[str], trust_remote_code: bool) -> Any:
    """The base encoder with an untrained head drawn from `HEAD_SEED`; the global RNG is left untouched."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(HEAD_SEED)
        return tagger_head(base_path, tags, trust_remote_code).eval()


def load_classifier(
    model_path: Path | str, adapter_dir: Path | str | None, labels: list[str], trust_remote_code: bool, **kwargs: Any
) -> Any:
    """A served classifier in eval mode: `model_path`'s weights, with the adapter in `adapter_dir` when given;
    a pooled-embedding classifier when either folder holds `pooled_head.json`. `kwargs` go to `classifier_head`."""
    from tuneloom.pooled_head import load_pooled

    for folder in (adapter_dir, model_path):
        if folder is not None and is_pooled(folder):
            return load_pooled(folder, model_path, trust_remote_code)
    model = classifier_head(model_path, labels, trust_remote_code, **kwargs)
    return attach_adapter(model, adapter_dir) if adapter_dir is not None else model.eval()


def attach_adapter(base: Any, adapter_dir: Path | str) -> Any:
    """`base` with the LoRA adapter saved in `adapter_dir` (QLoRA adapters too: the base stays unquantized)."""
    from peft import PeftModel

    return PeftModel.from_pretrained(base, str(adapter_dir)).eval()


def _full(head: InferenceHead, model_dir: Path, dtype: torch.dtype, trust_remote_code: bool) -> Any:
    from transformers import (
        AutoModelForCausalLM,
        AutoModelForSequenceClassification,
        AutoModelForTokenClassification,
    )

    factory = {
        "causal_lm": AutoModelForCausalLM,
        "sequence_classification": AutoModelForSequenceClassification,
        "token_classification": AutoModelForTokenClassification,
    }[head]
    return factory.from_pretrained(model_dir, dtype=dtype, trust_remote_code=trust_remote_code).eval()


def load_base(
    head: InferenceHead,
    base_path: Path | str,
    precision: str,
    labels: list[str],
    trust_remote_code: bool,
    multi_label: bool = False,
    pad_token_id: int | None = None,
) -> Any:
    """The untrained base in eval mode: a causal LM in `precision`, or the encoder with a fresh fp32 head
    (a seeded one for token classification, see `base_tagger`)."""
    if head == "sequence_classification":
        return classifier_head(base_path, labels, trust_remote_code, multi_label, pad_token_id).eval()
    if head == "token_classification":
        return base_tagger(base_path, labels, trust_remote_code)
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(
        base_path, dtype=model_dtype(precision), trust_remote_code=trust_remote_code
    ).eval()


def load_trained(
    head: InferenceHead,
    model_dir: Path | str,
    base_path: Path | str,
    method: str,
    precision: str,
    labels: list[str],
    trust_remote_code: bool,
    multi_label: bool = False,
    pad_token_id: int | None = None,
) -> Any:
    """A trained model in eval mode: full weights from `model_dir`, or the base with the adapter in `model_dir`.

    `labels`: the head's label names (classes, or IOB2 tags for token classification; ignored for a
    causal LM). `pad_token_id`: set on a classification base whose config has none.
    """
    if head == "sequence_classification" and is_pooled(model_dir):
        from tuneloom.pooled_head import load_pooled

        return load_pooled(model_dir, base_path, trust_remote_code)
    if method == "full":
        dtype = model_dtype(precision if head == "causal_lm" else "fp32")
        return _full(head, Path(model_dir), dtype, trust_remote_code)
    base = load_base(head, base_path, precision, labels, trust_remote_code, multi_label, pad_token_id)
    return attach_adapter(base, model_dir)
