"""The embedder: a sentence-transformers model loaded offline, its content hash, tokenizer and fast encoding."""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tuneloom.catalog import resolve_model
from tuneloom.errors import ModelNotAvailable

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

# Files that decide what vectors a model produces: weights, architecture, pooling and tokenizer.
_HASHED = ("*.safetensors", "config.json", "modules.json", "sentence_bert_config.json", "tokenizer.json", "vocab.txt")


def embedder_hash(folder: Path) -> str:
    """SHA-256 over the model files that shape its vectors (weights, config, pooling, tokenizer)."""
    return _hash_files(folder.resolve(), tuple((p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in _files(folder)))


def _files(folder: Path) -> list[Path]:
    found = {p for pattern in _HASHED for p in folder.glob(pattern)}
    found |= set(folder.glob("*_Pooling/config.json"))
    return sorted(found)


@cache
def _hash_files(folder: Path, stamp: tuple[tuple[str, int, int], ...]) -> str:
    """Cached by the files' names, times and sizes, so opening an index twice hashes the weights once."""
    digest = hashlib.sha256()
    for path in _files(folder):
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0")
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def _bf16_supported() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX); emulated bf16 would be slower."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


class Embedder:
    """Encodes text to L2-normalised float32 vectors; counts tokens with the same tokenizer."""

    def __init__(self, ref: str, batch_size: int = 64, bf16: bool = True) -> None:
        self.ref = ref
        self.folder = resolve_model(ref)
        self.hash = embedder_hash(self.folder)
        self.batch_size = batch_size
        self.model = _load(self.folder, self.hash, bf16)
        self.device = self.model.device.type
        self.tokenizer: Any = self.model.tokenizer
        self.window = int(self.model.max_seq_length or 512) - 2  # room for [CLS] and [SEP]

    @property
    def dim(self) -> int:
        dim = self.model.get_embedding_dimension()
        if not dim:
            raise ModelNotAvailable(f"{self.folder}: the embedder does not report its vector size; is it a sentence encoder?")
        return int(dim)

    def encode(self, texts: list[str]) -> np.ndarray:
        """float32 vectors, one row per text (sentence-transformers batches texts of similar length together)."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = self.model.encode(
            texts, batch_size=self.batch_size, convert_to_numpy=True, normalize_embeddings=True, show_progress_bar=False
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def encode_query(self, text: str) -> np.ndarray:
        """One query's vector, computed on one intra-op thread (see `_one_thread`)."""
        with _one_thread():
            return self.encode([text])[0]

    def count(self, texts: list[str]) -> list[int]:
        if not texts:
            return []
        ids = self.tokenizer(texts, add_special_tokens=False, return_attention_mask=False)["input_ids"]
        return [len(i) for i in ids]

    def offsets(self, text: str) -> list[tuple[int, int]]:
        enc = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, return_attention_mask=False)
        return [(int(a), int(b)) for a, b in enc["offset_mapping"]]

    def fit_query(self, text: str) -> tuple[str, str | None]:
        """The query cut to the embedder's window, and a note when it had to be cut."""
        offsets = self.offsets(text)
        if len(offsets) <= self.window:
            return text, None
        note = f"the query has {len(offsets)} tokens; only the first {self.window} (the embedder's window) were used"
        return text[: offsets[self.window - 1][1]], note


_THREADS_LOCK = threading.Lock()


@contextmanager
def _one_thread() -> Iterator[None]:
    """Run torch on one intra-op thread inside the block.

    A query is a handful of tokens: its ~100 small matrix products gain nothing from a second OpenMP thread,
    but every one of them ends in a barrier that waits for that thread, and on a busy machine the wait is a
    time slice. Measured on the 2-core box under load: 7.6 ms CPU per query on one thread, 80-170 ms on two.
    `torch.set_num_threads` sets the calling thread's OpenMP team size, but also MKL's process-wide count: work
    on other threads may run its matrix products on one thread for those few milliseconds. The lock keeps
    concurrent query encodings from restoring each other's setting too early.
    """
    import torch

    with _THREADS_LOCK:
        before = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            yield
        finally:
            torch.set_num_threads(before)


@cache
def _load(folder: Path, content_hash: str, bf16: bool) -> SentenceTransformer:
    """The model, loaded once per process for each content hash and precision (indexes sharing it share it).

    With `bf16` on a GPU or a CPU with native bfloat16 (AVX512-BF16, AMX) the weights are cast to bfloat16:
    about twice the throughput of float32 on such CPUs, vectors within cosine 0.998 of float32 ones.
    """
    import torch
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as hf_logging

    logging.getLogger("sentence_transformers").setLevel(logging.ERROR)  # "no modules.json: mean pooling" chatter
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # the weight-loading bar would cut through the index progress bars
    try:
        model = SentenceTransformer(str(folder), local_files_only=True, trust_remote_code=False)
        if bf16 and (model.device.type == "cuda" or _bf16_supported()):
            model = model.to(torch.bfloat16)
        return model
    except (OSError, ValueError) as exc:
        raise ModelNotAvailable(f"{folder}: cannot load as a sentence-transformers embedder ({exc})") from None
    finally:
        if bars:
            hf_logging.enable_progress_bar()
