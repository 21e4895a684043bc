"""`tuneloom export`: tuned models as GGUF files for llama.cpp, Ollama and LM Studio, written offline.

source.py     a run folder or registry reference -> model folder, base folder, registry version
llama.py      HF Llama weights -> GGUF (f16, q8_0, q4_0 via gguf.quants)
tokenizer.py  byte-level BPE tokenizer, special tokens and chat template as GGUF metadata
lora.py       peft LoRA -> llama.cpp LoRA GGUF, or why it must be merged
ollama.py     Modelfile (template, system prompt, stop tokens)
api.py        export_model: writes the files, export.json with hashes, the registry tag
"""

from tuneloom.export.api import FORMATS, export_model, record_export
from tuneloom.export.llama import QUANTS
from tuneloom.export.tokenizer import UnsupportedModel

__all__ = ["FORMATS", "QUANTS", "UnsupportedModel", "export_model", "record_export"]
