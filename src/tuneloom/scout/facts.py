"""Static facts of a candidate: `catalog.model_info` (config, safetensors headers, model card)."""

from __future__ import annotations

from tuneloom.catalog import ModelInfo, model_info, resolve_model


def model_facts(ref: str, trust_remote_code: bool = False) -> ModelInfo:
    """Architecture, parameters, layers, sizes, context, license, disk size, chat template.

    Raises ModelNotAvailable (with what to do) when the reference cannot be had offline.
    """
    resolve_model(ref, trust_remote_code)  # checks safetensors and custom code before reading anything
    return model_info(ref)
