"""VLM backbones for federated VQA: families, selectable units, the `VqaModel` wrapper, local training
and the offline foundation checkpoints. Start at `build_vqa_model`; `VqaModel` documents what the
federated code may do to a model (masks, per-unit state)."""

from f3ocus.models.family import FamilySpec, StackRule
from f3ocus.models.foundation import ensure_foundation, foundation_dir, pretrain
from f3ocus.models.peft_modes import UNIT_MODES, ModeSettings
from f3ocus.models.registry import FAMILIES, build_vqa_model, get_family, list_presets, list_units
from f3ocus.models.tokenizer import build_word_tokenizer, default_words
from f3ocus.models.training import EncodedShard, EvalResult, encode_examples, evaluate, train_epochs
from f3ocus.models.units import UnitSpec, discover_units
from f3ocus.models.vqa_model import LoraSettings, UnitMode, VqaModel

__all__ = [
    "FAMILIES",
    "UNIT_MODES",
    "EncodedShard",
    "EvalResult",
    "FamilySpec",
    "LoraSettings",
    "ModeSettings",
    "StackRule",
    "UnitMode",
    "UnitSpec",
    "VqaModel",
    "build_vqa_model",
    "build_word_tokenizer",
    "default_words",
    "discover_units",
    "encode_examples",
    "ensure_foundation",
    "evaluate",
    "foundation_dir",
    "get_family",
    "list_presets",
    "list_units",
    "pretrain",
    "train_epochs",
]
