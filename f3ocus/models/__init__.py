"""VLM backbones for federated VQA: families, selectable units, the `VqaModel` wrapper, local training
and the offline foundation checkpoints. Start at `build_vqa_model`; `VqaModel` documents what the
federated code may do to a model (masks, per-unit state).

The names below load on first use (PEP 562), not with the package: a light submodule (`losses`,
`catalog`) must not pull transformers and peft into every process that imports it (the driver's
config validation, the scorers), which costs seconds of start-up.
"""

import importlib

_EXPORTS = {
    "FAMILIES": "registry", "build_vqa_model": "registry", "get_family": "registry", "list_presets": "registry",
    "list_units": "catalog",
    "FamilySpec": "family", "StackRule": "family",
    "ensure_foundation": "foundation", "foundation_dir": "foundation", "pretrain": "foundation",
    "UNIT_MODES": "peft_modes", "ModeSettings": "peft_modes",
    "build_word_tokenizer": "tokenizer", "default_words": "tokenizer",
    "EncodedShard": "training", "EvalResult": "training", "encode_examples": "training", "evaluate": "training",
    "train_epochs": "training",
    "UnitSpec": "units", "discover_units": "units",
    "LoraSettings": "vqa_model", "UnitMode": "vqa_model", "VqaModel": "vqa_model",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
