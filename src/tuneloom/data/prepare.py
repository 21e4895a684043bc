"""`prepare_dataset`: the sources named in a task become a versioned, validated dataset folder.

ingest -> clean and format -> deduplicate -> redact -> token lengths -> split -> write + report.
Every row read is accounted for: kept in a split, rejected (rejects.jsonl, with the reason), or
removed as an exact or near duplicate of an earlier row (also in rejects.jsonl, naming it).
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tuneloom.artifacts import (
    DatasetManifest,
    ManifestResult,
    PreparedDataset,
    SourceAccount,
    manifest_path,
    read_manifest,
    write_manifest,
)
from tuneloom.atomic import atomic_dir, read_jsonl, write_jsonl_atomic
from tuneloom.config import Project, SourceConfig, TaskConfig
from tuneloom.data import tokens
from tuneloom.data.dedup import NearDuplicates, clusters
from tuneloom.data.ingest import SourceInfo, read_source, source_files
from tuneloom.data.redact import load_person_finder
from tuneloom.data.report import write_data_report
from tuneloom.data.rows import RowStage, run_rows
from tuneloom.data.split import split_examples
from tuneloom.errors import DataError
from tuneloom.tasks import kind_of
from tuneloom.workspace import Workspace

if TYPE_CHECKING:
    from tuneloom.knowledge.raft import Retriever

PREP_VERSION = 2  # bump when the output of the same inputs changes
LIBRARIES = (
    "tuneloom",
    "pandas",
    "pyarrow",
    "openpyxl",
    "pypdf",
    "python-docx",
    "beautifulsoup4",
    "charset-normalizer",
    "datasketch",
    "langdetect",
    "transformers",
)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    except OSError as exc:
        raise DataError(f"{path}: cannot read the file ({exc.strerror}); check its permissions") from None
    return digest.hexdigest()


def _hash_source(path: Path, source: SourceConfig, root: Path) -> tuple[str, dict[str, str]]:
    files = source_files(path, source, root)
    hashes = {(f.name if f == path else f.relative_to(path).as_posix()): _sha256(f) for f in files}
    if path.is_file():
        return next(iter(hashes.values())), hashes
    return hashlib.sha256(json.dumps(hashes, sort_keys=True).encode()).hexdigest(), hashes


def _columns_present(path: Path, record: dict[str, Any], required: list[str]) -> None:
    missing = [c for c in required if c not in record]
    if missing:
        import difflib

        hints = []
        for col in missing:
            close = difflib.get_close_matches(col, list(record), n=1)
            hints.append(f"'{col}'" + (f" (did you mean '{close[0]}'?)" if close else ""))
        raise DataError(
            f"{path}: mapped column(s) {', '.join(hints)} not found; the file has columns {_listing(list(record))}. "
            f"Fix `data.columns` in the project file."
        )


def _listing(columns: list[str], limit: int = 20) -> str:
    """A column list for a message: the first `limit` names, then how many more."""
    if len(columns) <= limit:
        return str(columns)
    return f"{columns[:limit]} and {len(columns) - limit} more ({len(columns)} in all)"


def dataset_version(task: TaskConfig, source_hashes: list[str]) -> str:
    payload = json.dumps(
        {
            "v": PREP_VERSION,
            "type": task.type,
            "data": task.data.model_dump(mode="json"),
            "sources": source_hashes,
            "model": task.model,
            "max_length": task.train.max_length,
        },
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:12]


def _retriever(project: Project, task: TaskConfig) -> Retriever | None:
    """The knowledge base the task names, opened for retrieval at data-prep time (None without one)."""
    if task.knowledge is None:
        return None
    from tuneloom.knowledge.raft import open_retriever

    return open_retriever(project, task.knowledge)


def _knowledge_inputs(task: TaskConfig, retriever: Retriever | None) -> list[str]:
    """What of the knowledge base a dataset version depends on: its name, content version and the rag settings."""
    if retriever is None:
        return []
    return [f"knowledge:{retriever.name}:{retriever.version}:{task.rag.model_dump_json()}"]


def _passage_warnings(task: TaskConfig, splits: dict[str, list[dict[str, Any]]]) -> list[str]:
    """Examples whose prompt, passages included, fills train.max_length (training would skip them)."""
    full = sum(1 for rows in splits.values() for e in rows if e.get("_prompt_tokens", 0) >= task.train.max_length)
    if not full:
        return []
    return [
        f"{full} example(s) with their retrieved passages fill train.max_length {task.train.max_length} tokens before "
        f"the answer: raise train.max_length, or lower rag.passage_chars ({task.rag.passage_chars}) or rag.top_k"
    ]


def _versions() -> dict[str, str]:
    out = {}
    for name in LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


@dataclass
class SourceTally:
    """One source's counts while its rows are sorted into kept, rejected and duplicate."""

    read: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    duplicates: int = 0
    near_duplicates: int = 0
    redacted: Counter[str] = field(default_factory=Counter)
    encoding: str | None = None

    def account(self, path: Path, sha256: str, files: dict[str, str]) -> SourceAccount:
        kept = self.read - sum(self.rejected.values()) - self.duplicates
        return SourceAccount(
            path=str(path),
            sha256=sha256,
            files=files,
            read=self.read,
            kept=kept,
            rejected=dict(self.rejected),
            duplicates=self.duplicates,
            near_duplicates=self.near_duplicates,
            redacted={k: v for k, v in self.redacted.items() if v},
            encoding=self.encoding,
        )


@dataclass
class SortedRows:
    """Every row read, sorted: kept examples, rejects (with reasons), near duplicates and redaction originals."""

    kept: list[dict[str, Any]] = field(default_factory=list)
    rejects: list[dict[str, Any]] = field(default_factory=list)
    near_dups: list[dict[str, Any]] = field(default_factory=list)
    originals: list[dict[str, Any]] = field(default_factory=list)
    by_location: dict[str, dict[str, Any]] = field(default_factory=dict)


def _read_rows(
    project: Project, task: TaskConfig, paths: list[Path], stage: RowStage, tallies: list[SourceTally], warnings: list[str]
) -> tuple[list[Any], list[int]]:
    """(rows, index of the source each row came from), checking the mapped columns exist.

    Records each source's encoding in its tally and appends encoding warnings to `warnings`.
    """
    rows, owner = [], []
    for i, (source, path) in enumerate(zip(task.data.sources, paths)):
        info = SourceInfo()
        source_rows = read_source(path, source, info, project.root)
        if source_rows:
            _columns_present(path, source_rows[0][1], stage.required)
        tallies[i].encoding = info.encoding()
        warnings.extend(info.warnings)
        rows.extend(source_rows)
        owner.extend([i] * len(source_rows))
    return rows, owner


def _sort_rows(task: TaskConfig, results: list[Any], owner: list[int], tallies: list[SourceTally]) -> SortedRows:
    """Reject, deduplicate (exact, then near) and number the formatted rows; tallies count per source."""
    data, out = task.data, SortedRows()
    seen: dict[str, str] = {}
    near = NearDuplicates(data.dedup) if data.dedup.near else None
    for src, r in zip(owner, results):
        tally = tallies[src]
        tally.read += 1
        if r.example is None:
            tally.rejected[r.reason] += 1
            out.rejects.append({"location": r.location, "reason": r.reason})
            continue
        if data.dedup.exact and r.key in seen:
            tally.duplicates += 1
            out.rejects.append({"location": r.location, "reason": "exact_duplicate", "duplicate_of": seen[r.key]})
            continue
        match = near.check(r.location, r.signature) if near is not None and r.signature is not None else None
        if match is not None:
            tally.duplicates += 1
            tally.near_duplicates += 1
            entry = {
                "location": r.location,
                "reason": "near_duplicate",
                "duplicate_of": match[0],
                "similarity": round(match[1], 3),
            }
            out.rejects.append(entry)
            out.near_dups.append({**entry, "text": _preview(r.example)})
            continue
        seen[r.key] = r.location
        _keep(task, r, src, tally, out)
    return out


def _keep(task: TaskConfig, r: Any, src: int, tally: SourceTally, out: SortedRows) -> None:
    ex = r.example
    ex["id"] = f"{task.name}-{len(out.kept):06d}"
    ex["source"] = r.location
    ex["_src"] = src
    if task.data.sources[src].split:
        ex["split"] = task.data.sources[src].split
    if r.redacted:
        ex["_redacted"] = r.redacted
        tally.redacted.update(r.redacted)
        if task.data.redact.keep_originals and r.originals:
            out.originals.append({"id": ex["id"], "source": r.location, "replaced": r.originals})
    out.by_location[r.location] = ex
    out.kept.append(ex)


def _token_lengths(task: TaskConfig, rows: SortedRows, tallies: list[SourceTally], warnings: list[str]) -> tuple[Any, int | None]:
    """Measure token lengths with the model's tokenizer; reject or warn about over-long examples.

    Returns (tokenizer or None, context window); appends to `warnings`, may shrink `rows.kept`.
    """
    data = task.data
    tokenizer, window, why_not = tokens.load_tokenizer(task) if data.token_stats and rows.kept else (None, None, None)
    if why_not:
        warnings.append(f"token statistics skipped: {why_not}")
    if tokenizer is None:
        return None, window
    kind_of(task.type).measure_tokens(rows.kept, tokenizer)
    max_length = task.train.max_length
    if window and max_length > window:
        warnings.append(f"train.max_length {max_length} exceeds the model's context window of {window} tokens")
    long = [e for e in rows.kept if tokens.over_length(e, max_length)]
    if long and data.over_length == "reject":
        for e in long:
            tallies[e["_src"]].rejected["over_max_tokens"] += 1
            tallies[e["_src"]].redacted.subtract(e.get("_redacted", {}))
            rows.rejects.append({"location": e["source"], "reason": "over_max_tokens", "tokens": e["_tokens"]})
        drop = {id(e) for e in long}
        rows.kept = [e for e in rows.kept if id(e) not in drop]
    elif long:
        warnings.append(
            f"{len(long)} example(s) exceed train.max_length {max_length} tokens and will be truncated "
            f"in training (data.over_length: reject drops them instead)"
        )
    return tokenizer, window


def _manifest(
    project: Project, task: TaskConfig, result: PreparedDataset, label_counts: Any, token_stats: Any
) -> DatasetManifest:
    return DatasetManifest(
        result=ManifestResult(**result.model_dump(exclude={"reused"})),
        task_type=task.type,
        data_config=task.data.model_dump(mode="json"),
        model=task.model,
        label_counts=label_counts,
        tokens=token_stats,
        libraries=_versions(),
        prep_version=PREP_VERSION,
        project_file=str(project.path),
    )


def _write_version(
    folder: Path, task: TaskConfig, splits: dict[str, list[dict[str, Any]]], rows: SortedRows, manifest: DatasetManifest
) -> None:
    """The dataset folder, whole or not at all: splits, rejects, originals (on request), manifest, report."""
    with atomic_dir(folder) as tmp:
        for split, split_rows in splits.items():
            write_jsonl_atomic(tmp / f"{split}.jsonl", [_public(e) for e in split_rows])
        write_jsonl_atomic(tmp / "rejects.jsonl", rows.rejects)
        if task.data.redact.keep_originals:
            write_jsonl_atomic(tmp / "redactions.jsonl", rows.originals)
        write_manifest(tmp, manifest)
        near = clusters(_with_kept(rows.near_dups, rows.by_location))
        write_data_report(tmp / "report.html", manifest.model_dump(mode="json"), splits, rows.rejects, near)


def _source_paths(project: Project, task: TaskConfig) -> list[Path]:
    paths = [project.source_path(s) for s in task.data.sources]
    for p in paths:
        if not p.exists():
            raise DataError(
                f"data source not found: {p}. Check `data.sources[].path` in {project.path} "
                f"(paths are relative to the project file)."
            )
    return paths


def _accounts(
    hashed: list[tuple[str, dict[str, str]]], paths: list[Path], tallies: list[SourceTally], log: Callable[[str], None]
) -> list[SourceAccount]:
    accounts = []
    for (source_hash, files), path, tally in zip(hashed, paths, tallies):
        account = tally.account(path, source_hash, files)
        accounts.append(account)
        log(
            f"{path.name}: read {account.read}, kept {account.kept}, rejected {sum(account.rejected.values())}, "
            f"duplicates {account.duplicates} ({account.near_duplicates} near)"
        )
    return accounts


def prepare_dataset(
    project: Project, task_name: str | None = None, log: Callable[[str], None] = lambda _msg: None
) -> PreparedDataset:
    """Prepare one task's data; reuses the existing version when inputs and settings are unchanged."""
    task = project.config.task(task_name)
    data, ws = task.data, Workspace(project.workspace)
    paths = _source_paths(project, task)
    hashed = [_hash_source(p, s, project.root) for p, s in zip(paths, task.data.sources)]
    retriever = _retriever(project, task)
    version = dataset_version(task, [h for h, _ in hashed] + _knowledge_inputs(task, retriever))
    folder = ws.dataset_dir(task.name, version)
    if manifest_path(folder).is_file():
        previous = read_manifest(folder)
        ws.set_latest_dataset(task.name, version)
        log(f"{task.name}: inputs unchanged, reusing dataset {version}")
        return PreparedDataset(**previous.result.model_dump(exclude={"reused"}), reused=True)

    ner_model = data.redact.ner_model  # set whenever person redaction is on (RedactConfig validates it)
    person = load_person_finder(ner_model) if data.redact.enabled and "person" in data.redact.types and ner_model else None
    stage = RowStage(task.type, data, person)
    tallies = [SourceTally() for _ in paths]
    warnings: list[str] = []
    raw, owner = _read_rows(project, task, paths, stage, tallies, warnings)
    rows = _sort_rows(task, run_rows(stage, raw, data.workers), owner, tallies)
    tokenizer, window = _token_lengths(task, rows, tallies, warnings)
    if not rows.kept:
        _nothing_kept(task, ws.dataset_dir(task.name, f"rejected-{version}"), paths, tallies, rows.rejects)
    accounts = _accounts(hashed, paths, tallies, log)
    splits = split_examples(rows.kept, data.split)
    kind = kind_of(task.type)
    knowledge = kind.attach_knowledge(task, splits, retriever, tokenizer) if retriever else None
    if knowledge is not None and tokenizer is not None:
        warnings.extend(_passage_warnings(task, splits))
    label_counts = kind.label_counts(splits)
    if label_counts:
        warnings.extend(_label_warnings(label_counts, data.rare_class_min))
    token_stats = {s: tokens.summary(v, task.train.max_length, window) for s, v in splits.items()} if tokenizer else None
    if token_stats and token_stats["train"].get("misaligned_entities"):
        n = sum(t.get("misaligned_entities", 0) for t in token_stats.values())
        warnings.append(
            f"{n} entity span(s) do not start or end on a token boundary of {task.model}'s tokenizer; "
            f"their BIO tags will cover the whole tokens they touch"
        )
    for w in warnings:
        log(f"warning: {w}")
    result = PreparedDataset(
        task=task.name,
        version=version,
        path=str(folder),
        reused=False,
        counts={s: len(v) for s, v in splits.items()},
        labels=kind.labels(rows.kept),
        sources=accounts,
        redacted=dict(sum((Counter(a.redacted) for a in accounts), Counter())),
        warnings=warnings,
    )
    manifest = _manifest(project, task, result, label_counts, token_stats)
    manifest.knowledge = knowledge
    _write_version(folder, task, splits, rows, manifest)
    ws.set_latest_dataset(task.name, version)
    return result


def _nothing_kept(
    task: TaskConfig, folder: Path, paths: list[Path], tallies: list[SourceTally], rejects: list[dict[str, Any]]
) -> None:
    """Every row was rejected (or there were none): say why, with counts, and keep rejects.jsonl where the message says."""
    lines = []
    for path, tally in zip(paths, tallies):
        if tally.read == 0:
            lines.append(f"  {path.name}: no rows to read (a header without rows, or no records)")
            continue
        reasons = ", ".join(f"{reason} ({n})" for reason, n in tally.rejected.most_common())
        dupes = f", duplicates ({tally.duplicates})" if tally.duplicates else ""
        lines.append(f"  {path.name}: read {tally.read}; rejected: {reasons or 'none'}{dupes}")
    where = ""
    if rejects:
        write_jsonl_atomic(folder / "rejects.jsonl", rejects)
        where = f"\nEach rejected row, with its reason: {folder / 'rejects.jsonl'}"
    raise DataError(f"task '{task.name}': no usable rows.\n" + "\n".join(lines) + where)


def _preview(example: dict[str, Any], limit: int = 300) -> str:
    from tuneloom.data.format import dedup_texts

    text = " / ".join(dedup_texts(example))
    return text if len(text) <= limit else text[:limit] + "…"


def _with_kept(near_dups: list[dict[str, Any]], by_location: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Near duplicates with the (redacted) text of the row each one duplicates, for the report."""
    return [{**d, "kept_text": _preview(by_location[d["duplicate_of"]])} for d in near_dups if d["duplicate_of"] in by_location]


def _public(example: dict[str, Any]) -> dict[str, Any]:
    """A split row as the contract says: no working fields (underscored, split, group)."""
    return {k: v for k, v in example.items() if not k.startswith("_") and k not in ("split", "group")}


def _label_warnings(label_counts: dict[str, dict[str, int]], rare: int) -> list[str]:
    totals = sum((Counter(c) for c in label_counts.values()), Counter())
    out = []
    few = sorted(k for k, n in totals.items() if n < rare)
    if few:
        out.append(f"rare label(s) with fewer than {rare} examples: " + ", ".join(f"{k} ({totals[k]})" for k in few))
    untested = sorted(k for k in totals if not label_counts["test"].get(k))
    if untested:
        out.append(f"label(s) absent from the test split (too few to hold out): {', '.join(untested)}")
    return out


def load_split(dataset_dir: str | Path, split: str) -> list[dict[str, Any]]:
    path = Path(dataset_dir) / f"{split}.jsonl"
    if not path.is_file():
        raise DataError(f"{path} is missing; run `tuneloom data prepare` again")
    return read_jsonl(path)
