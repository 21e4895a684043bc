"""The `data` section of a task: sources, column roles, splits, cleaning, dedup and redaction."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from tuneloom.config.base import Strict

SourceFormat = Literal["auto", "csv", "tsv", "json", "jsonl", "parquet", "xlsx", "text", "pdf", "docx", "html"]


class SourceConfig(Strict):
    """One input file or folder of files, relative to the project file.

    Tables (CSV, TSV, JSON, JSONL, Parquet, xlsx) give one row per record; documents (text,
    Markdown, PDF, DOCX, HTML) give one row per file with the columns `text` and `file`.
    """

    path: str
    format: SourceFormat = Field("auto", description="Default: from the file extension.")
    encoding: str | None = Field(None, description="Text encoding of CSV/TSV/text files (default: detected).")
    delimiter: str | None = Field(None, min_length=1, max_length=1, description="CSV delimiter (default: detected).")
    sheet: str | int | None = Field(None, description="xlsx: sheet name or 0-based index (default: the first).")
    label_from_folder: bool = Field(False, description="Folder source: each file's sub-folder name becomes its `label` column.")
    allow_symlinks: bool = Field(
        False, description="Read symbolic links in the path or inside the folder (refused by default, naming the link)."
    )
    allow_outside_project: bool = Field(
        False, description="Read a path (or a link target) outside the project folder (refused by default)."
    )


class TaskSourceConfig(SourceConfig):
    """A task's data source; it may send all of its rows to one split."""

    split: Literal["train", "validation", "test"] | None = Field(
        None,
        description="Every row of this source goes to this split (e.g. held-out questions kept for testing); "
        "other sources are split as data.split says.",
    )


class ColumnsConfig(Strict):
    """Which source columns play which role."""

    prompt: str | None = Field(None, description="chat_sft / preference: the user's message.")
    response: str | None = Field(None, description="chat_sft: the assistant's answer.")
    messages: str | None = Field(None, description="chat_sft: a column holding an OpenAI-format list of messages.")
    text: str | list[str] | None = Field(
        None, description="Input text; a list of columns is joined with blank lines (e.g. subject and body)."
    )
    label: str | None = Field(None, description="classification: the class (several with data.multi_label).")
    entities: str | None = Field(
        None, description="ner: a list of {start, end, label} character spans (end exclusive) into the text."
    )
    chosen: str | None = Field(None, description="preference: the better answer.")
    rejected: str | None = Field(None, description="preference: the worse answer.")
    passage: str | None = Field(None, description="embedding: a passage that answers the query in `prompt`.")
    group: str | None = Field(None, description="Rows sharing this value (customer, thread) land in one split.")
    split: str | None = Field(None, description="A column holding train / validation / test: the user's own split.")
    slice: str | None = Field(None, description="Optional column to report results by (e.g. topic, product).")

    def required(self) -> list[str]:
        cols: list[str] = []
        for value in (
            self.prompt,
            self.response,
            self.messages,
            self.label,
            self.entities,
            self.chosen,
            self.rejected,
            self.passage,
            self.group,
            self.split,
            self.slice,
        ):
            if value:
                cols.append(value)
        if isinstance(self.text, str):
            cols.append(self.text)
        elif self.text:
            cols.extend(self.text)
        return cols

    def text_columns(self) -> list[str]:
        return [self.text] if isinstance(self.text, str) else list(self.text or [])


class SplitConfig(Strict):
    validation: Annotated[float, Field(ge=0.0, lt=1.0)] = Field(
        0.1, description="Share of the rows (or groups) held out for validation; 0: none."
    )
    test: Annotated[float, Field(gt=0.0, lt=1.0)] = Field(
        0.15, description="Share of the rows (or groups) held out for the test set used by evaluation."
    )
    seed: int = Field(42, description="Random seed of the split (also of evaluation's max_examples sample).")

    @model_validator(mode="after")
    def _fractions(self) -> SplitConfig:
        if self.validation + self.test >= 0.9:
            raise ValueError(f"validation ({self.validation}) + test ({self.test}) must leave at least 10% for training")
        return self


class BoilerplateRule(Strict):
    """A regular expression (Python syntax, multi-line mode) and what to do where it matches."""

    pattern: str
    action: Literal["cut_from", "remove"] = Field(
        "remove",
        description="remove: delete each match; cut_from: delete from the match to the end (signatures, quoted replies).",
    )

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a valid regular expression: {exc}") from None
        return value


class CleanConfig(Strict):
    """Text cleaning and quality filters (Unicode NFC and whitespace normalisation always run)."""

    html_to_text: bool = Field(True, description="Turn HTML markup found in text cells into plain text.")
    boilerplate: list[BoilerplateRule] = Field(
        default_factory=list, description="Rules removing signatures, quoted replies and disclaimers."
    )
    default_boilerplate: bool = Field(
        False, description="Also apply Tuneloom's built-in rules for e-mail signatures, quoted replies and disclaimers."
    )
    max_symbol_ratio: Annotated[float, Field(gt=0, le=1)] = Field(
        0.5, description="Reject text whose share of characters that are neither letters, digits nor spaces is higher."
    )
    max_repeated_line_ratio: Annotated[float, Field(gt=0, le=1)] = Field(
        0.5, description="Reject text in which a higher share of its non-empty lines are repeats."
    )
    languages: list[str] | None = Field(
        None, description="Keep only text detected (langdetect) as one of these ISO 639-1 codes, e.g. [en, de]."
    )


class DedupConfig(Strict):
    exact: bool = Field(True, description="Drop exact duplicates (ignoring case and whitespace).")
    near: bool = Field(True, description="Near duplicates by MinHash LSH (datasketch).")
    threshold: Annotated[float, Field(gt=0, lt=1)] = Field(0.8, description="Estimated Jaccard similarity of word 5-grams.")
    num_perm: Annotated[int, Field(ge=16, le=512)] = Field(
        128, description="MinHash permutations: more is more accurate and slower."
    )
    shingle: Annotated[int, Field(ge=1, le=10)] = Field(5, description="Words per shingle.")


PiiType = Literal["email", "phone", "iban", "card", "ip", "postal_code", "id_number", "person"]
_DEFAULT_PII: tuple[PiiType, ...] = ("email", "phone", "iban", "card", "ip", "postal_code", "id_number")


class RedactConfig(Strict):
    """Personal data replaced by typed placeholders (<EMAIL_1>...), the same token for the same value in one example."""

    enabled: bool = False
    types: list[PiiType] = Field(
        default_factory=lambda: list(_DEFAULT_PII),
        description="What to redact; 'person' needs ner_model.",
    )
    ner_model: str | None = Field(
        None, description="Local token-classification model folder (PER entities) for redacting person names."
    )
    keep_originals: bool = Field(
        False, description="Write the originals with their placeholders to redactions.jsonl (sensitive!)."
    )

    @model_validator(mode="after")
    def _person_needs_model(self) -> RedactConfig:
        if self.enabled and "person" in self.types and not self.ner_model:
            raise ValueError(
                "redact.types has 'person', which needs redact.ner_model (a local token-classification model folder)"
            )
        return self


class DataConfig(Strict):
    sources: list[TaskSourceConfig] = Field(min_length=1)
    columns: ColumnsConfig
    system_prompt: str | None = Field(None, description="Chat tasks: system message put before every example.")
    min_chars: Annotated[int, Field(ge=0)] = 1
    max_chars: Annotated[int, Field(gt=0)] = 20_000
    clean: CleanConfig = CleanConfig()
    dedup: DedupConfig = DedupConfig()
    redact: RedactConfig = RedactConfig()
    over_length: Literal["truncate", "reject"] = Field(
        "truncate", description="Examples longer than train.max_length tokens: truncated in training, or rejected here."
    )
    token_stats: bool = Field(
        True, description="Token-length statistics with the model's tokenizer (when it is available offline)."
    )
    rare_class_min: Annotated[int, Field(ge=1)] = Field(10, description="Warn about classes with fewer examples than this.")
    workers: Annotated[int, Field(ge=1, le=64)] | None = Field(
        None, description="Processes for cleaning and hashing (default: CPU count)."
    )
    split: SplitConfig = SplitConfig()
    multi_label: bool = Field(False, description="Classification: a row may carry several labels.")
    label_separator: str = Field(
        ",", min_length=1, description="Multi-label: how several labels are written in one cell (a JSON list cell also works)."
    )

    @model_validator(mode="after")
    def _one_way_to_split(self) -> DataConfig:
        fixed = [i for i, s in enumerate(self.sources) if s.split]
        if fixed and self.columns.split:
            raise ValueError(f"data.sources[{fixed[0]}].split and data.columns.split both say where rows go: use one of them")
        return self
