"""A classification head on pooled token embeddings: the pooling a sentence-transformers encoder was trained with.

BERT's sequence-classification head sits on the CLS pooler; a sentence-transformers encoder (all-MiniLM-L6-v2)
was trained to be read through mean pooling (its `modules.json` + `1_Pooling/config.json`). `PooledClassifier`
is that encoder, its pooling and a linear layer. A trained one is saved as a folder of plain files:

    pooled_head.json    pooling, normalisation, labels, recipe
    head.safetensors    the linear layer (weight, bias)
    config.json + model.safetensors      full fine-tuning: the encoder (a plain transformers model)
    adapter_config.json + adapter_model.safetensors   LoRA: the adapter on the base encoder

torch and transformers are imported inside the functions that load and save, so the CLI stays fast.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from tuneloom.inference import POOLED_HEAD_FILE as HEAD_FILE
from tuneloom.inference import is_pooled

WEIGHTS_FILE = "head.safetensors"
POOLINGS = ("mean", "cls", "max")


def encoder_pooling(path: Path | str) -> tuple[str, bool] | None:
    """(pooling, normalize) from a sentence-transformers folder's modules.json; None for any other model."""
    folder = Path(path)
    modules_file = folder / "modules.json"
    if not modules_file.is_file():
        return None
    modules = json.loads(modules_file.read_text())
    pooling = next((m for m in modules if m.get("type", "").endswith("models.Pooling")), None)
    if pooling is None:
        return None
    config = json.loads((folder / pooling.get("path", "1_Pooling") / "config.json").read_text())
    mode = config.get("pooling_mode")
    if mode is None:
        flags = {"mean": "pooling_mode_mean_tokens", "cls": "pooling_mode_cls_token", "max": "pooling_mode_max_tokens"}
        mode = next((name for name, key in flags.items() if config.get(key)), None)
    if mode not in POOLINGS:
        return None  # weighted or last-token pooling: keep the model's own head
    normalize = any(m.get("type", "").endswith("models.Normalize") for m in modules)
    return str(mode), normalize


def model_pooling(path: Path | str) -> tuple[str, bool]:
    """(pooling, normalize) to embed with the model in `path`, the one place that decides it: a
    sentence-transformers folder's own (`encoder_pooling`), else the BERT-style CLS token, or mean pooling for a
    causal LM (whose first token sees nothing of the text); normalised (heads and probes are fitted on unit vectors)."""
    found = encoder_pooling(path)
    if found is not None:
        return found
    config_json = Path(path) / "config.json"
    config = json.loads(config_json.read_text(encoding="utf-8")) if config_json.is_file() else {}
    causal = any(str(a).endswith("ForCausalLM") for a in config.get("architectures") or [])
    return ("mean" if causal else "cls"), True


def pool(hidden: torch.Tensor, mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """One vector per sequence from the last hidden states, ignoring padding (every embedding in Tuneloom's
    training, evaluation and scout code is pooled here)."""
    if pooling == "cls":
        return hidden[:, 0]
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    if pooling == "max":
        return hidden.masked_fill(weights == 0, torch.finfo(hidden.dtype).min).max(1).values
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1)


class PooledClassifier(torch.nn.Module):
    """`encoder` (a transformers model, or a peft model around one), its pooling, and a linear head over `labels`."""

    def __init__(self, encoder: Any, labels: list[str], pooling: str, normalize: bool, multi_label: bool = False) -> None:
        super().__init__()
        self.encoder = encoder
        self.labels = list(labels)
        self.pooling, self.normalize, self.multi_label = pooling, normalize, multi_label
        self.classifier = torch.nn.Linear(encoder.config.hidden_size, len(labels))
        self.config = encoder.config  # the Trainer and the training loop read it (attention, dtype)
        self.recipe = "head"

    def embed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        pooled = pool(hidden, attention_mask, self.pooling).float()
        return torch.nn.functional.normalize(pooled, dim=-1) if self.normalize else pooled

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor | None = None, **_: Any) -> Any:
        from transformers.modeling_outputs import SequenceClassifierOutput

        logits = self.classifier(self.embed(input_ids, attention_mask))
        loss = None
        if labels is not None:
            if self.multi_label:
                loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, labels.float())
            else:
                loss = torch.nn.functional.cross_entropy(logits, labels)
        return SequenceClassifierOutput(loss=loss, logits=logits)

    def describe(self) -> dict[str, Any]:
        return {
            "pooling": self.pooling,
            "normalize": self.normalize,
            "labels": self.labels,
            "multi_label": self.multi_label,
            "recipe": self.recipe,
        }


def copy_logistic_head(linear: torch.nn.Linear, head: Any, n_labels: int) -> None:
    """A fitted scikit-learn logistic regression (classes: label indices) as the linear layer's weights
    (softmax over the layer = the regression's probabilities)."""
    import numpy as np

    weight = np.zeros((n_labels, head.coef_.shape[1]), dtype=np.float32)
    bias = np.full(n_labels, -1e4, dtype=np.float32)  # a class absent from training is never predicted
    classes = [int(c) for c in head.classes_]
    if len(classes) == 2:  # one logit z for classes_[1]: softmax([-z/2, z/2]) = sigmoid(z)
        coef, intercept = head.coef_[0] / 2, head.intercept_[0] / 2
        weight[classes[0]], bias[classes[0]] = -coef, -intercept
        weight[classes[1]], bias[classes[1]] = coef, intercept
    else:
        for row, label in enumerate(classes):
            weight[label], bias[label] = head.coef_[row], head.intercept_[row]
    with torch.no_grad():
        linear.weight.copy_(torch.from_numpy(weight))
        linear.bias.copy_(torch.from_numpy(bias))


def build_pooled(
    path: Path | str, labels: list[str], pooling: tuple[str, bool], trust_remote_code: bool, multi_label: bool = False
) -> PooledClassifier:
    """The encoder in `path` (fp32) with a fresh head on its pooled embeddings."""
    from transformers import AutoModel

    encoder = AutoModel.from_pretrained(path, dtype=torch.float32, trust_remote_code=trust_remote_code)
    return PooledClassifier(encoder, labels, pooling[0], pooling[1], multi_label)


def save_pooled(model: PooledClassifier, out_dir: Path) -> Path:
    """The encoder (full weights, or the adapter), the head as plain safetensors, and pooled_head.json."""
    from safetensors.torch import save_file

    out_dir.mkdir(parents=True, exist_ok=True)
    model.encoder.save_pretrained(out_dir, safe_serialization=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.classifier.state_dict().items()}
    save_file(state, str(out_dir / WEIGHTS_FILE), metadata={"format": "pt"})
    (out_dir / HEAD_FILE).write_text(json.dumps(model.describe(), indent=2) + "\n")
    return out_dir


def load_pooled(model_dir: Path | str, base_path: Path | str, trust_remote_code: bool) -> PooledClassifier:
    """A saved `PooledClassifier` in eval mode: the encoder from `model_dir` (full weights) or the base
    encoder with the adapter in `model_dir`."""
    from safetensors.torch import load_file

    folder = Path(model_dir)
    if not is_pooled(folder):
        raise FileNotFoundError(f"{folder} has no {HEAD_FILE}: not a classifier on pooled embeddings")
    info = json.loads((folder / HEAD_FILE).read_text())
    has_adapter = (folder / "adapter_config.json").is_file()
    model = build_pooled(
        base_path if has_adapter else folder,
        info["labels"],
        (info["pooling"], info["normalize"]),
        trust_remote_code,
        info.get("multi_label", False),
    )
    if has_adapter:
        from peft import PeftModel

        model.encoder = PeftModel.from_pretrained(model.encoder, str(folder))
    model.classifier.load_state_dict(load_file(str(folder / WEIGHTS_FILE)))
    model.recipe = info.get("recipe", "head")
    return model.eval()
