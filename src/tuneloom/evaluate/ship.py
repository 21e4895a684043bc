"""A cheap baseline as a run of its own: gated, registered, promoted and served like a tuned version.

When `gate.beat_baselines` says "ship the baseline instead", `ship_baseline` makes that baseline a model:
the embedding baseline (`embedding_logreg`: logistic regression on the frozen base encoder's embeddings) is
the frozen encoder with the regression copied into a plain-safetensors linear head, saved as the
`PooledClassifier` folder every tuned classifier on pooled embeddings uses (`pooled_head.json`,
`head.safetensors`, the encoder's own safetensors). Evaluation, `tuneloom models register/promote` and
`tuneloom serve` load it as any full fine-tune; nothing is pickled. The TF-IDF baseline is not shippable: a
scikit-learn pipeline would need pickle (or skops, not a dependency) and a separate serving path.
"""

from __future__ import annotations

import time
from pathlib import Path

from tuneloom.artifacts import RunSnapshot, TrainingSummary, TrainResult, read_manifest, read_snapshot, write_summary
from tuneloom.errors import TuneloomError
from tuneloom.workspace import Workspace, set_status

SHIPPABLE = ("embedding_logreg",)


def _check(snapshot: RunSnapshot, name: str) -> None:
    from tuneloom.tasks import kind_of

    task = snapshot.task_config()
    if name not in SHIPPABLE:
        raise TuneloomError(
            f"baseline '{name}' cannot be shipped: only {', '.join(SHIPPABLE)} (a frozen encoder and a safetensors head); "
            "a TF-IDF pipeline would have to be pickled"
        )
    if kind_of(task.type).head != "sequence_classification" or task.data.multi_label:
        raise TuneloomError(f"only single-label classification baselines can be shipped; task '{task.name}' is {task.type}")
    if snapshot.baseline is not None:
        raise TuneloomError(f"this run already is the baseline '{snapshot.baseline}'; ship from the tuned run")


def ship_baseline(run_dir: str | Path, name: str = "embedding_logreg") -> Path:
    """A new finished run (in the same workspace) whose model/ is baseline `name` fitted on `run_dir`'s train
    split; evaluate it (`evaluate_run`) before gating and registering it, as any run."""
    from transformers import AutoTokenizer

    from tuneloom.data import load_split
    from tuneloom.evaluate.baselines import embed_texts, fit_probe
    from tuneloom.pooled_head import build_pooled, copy_logistic_head, model_pooling, save_pooled

    source = Path(run_dir).resolve()
    snapshot = read_snapshot(source)
    _check(snapshot, name)
    task = snapshot.task_config()
    labels = read_manifest(snapshot.dataset.path).labels
    base = Path(snapshot.base_model_path)
    started = time.time()
    train = load_split(Path(snapshot.dataset.path), "train")
    texts = [r["text"] for r in train]
    vectors = embed_texts(base, texts, task.train.max_length, task.eval.batch_size, task.trust_remote_code)
    probe = fit_probe(vectors, train, labels, multi_label=False)
    model = build_pooled(base, labels, (model_pooling(base)[0], True), task.trust_remote_code)  # probes see unit vectors
    copy_logistic_head(model.classifier, probe, len(labels))
    model.recipe = name
    method = {**snapshot.task["method"], "kind": "full", "merge": False}
    shipped = snapshot.model_copy(update={"task": {**snapshot.task, "method": method}, "baseline": name, "init_from": None})
    run = Workspace(source.parent.parent).new_run(task.name, shipped)
    model_dir = save_pooled(model, run / "model")
    AutoTokenizer.from_pretrained(base, trust_remote_code=task.trust_remote_code).save_pretrained(model_dir)
    head = sum(p.numel() for p in model.classifier.parameters())
    result = TrainResult(
        task=task.name,
        run_dir=str(run),
        model_dir=str(model_dir),
        dataset=snapshot.dataset.path,
        method="full",
        precision="fp32",
        steps=0,  # a logistic regression fit, no gradient steps
        epochs=0.0,
        train_loss=None,
        eval_loss=None,
        seconds=round(time.time() - started, 2),
        tokens=0,
        tokens_per_s=0.0,
        trainable_parameters=head,
        total_parameters=head + sum(p.numel() for p in model.encoder.parameters()),
        truncated_examples=0,
    )
    write_summary(run, TrainingSummary(train=result))
    set_status(run, "completed")
    return run
