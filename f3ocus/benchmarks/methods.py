"""The methods the paper compares (docs/METHOD.md §5), each as config overrides of one experiment.

Every method runs through the same engine; a method is only a choice of selector (`selection.method`), client
scorer (`selection.scorer`) and unit mode (`model.unit_mode`: what a unit trains). Two groups:

- "selection" (Table A): layer-selection baselines at the task's per-client budgets, on whole blocks
  (`unit_mode: layer`, the paper's "layers"). Score-based baselines are a client scorer + `top_k` (each
  client trains its own top-budget units, no server step); `lntk_only` is LNTK + client top-k; `f3ocus` adds
  the server's bi-objective step (NSGA-II, knee point).
- "peft" (Table B): PEFT baselines train every unit (`selection.method: full`) in a parameter-efficient unit
  mode, compared with F3OCUS selecting LoRA adapters at the task's budgets (`f3ocus_lora`), as the paper's
  efficiency table does (T1, adapters), and FedDAT (a shared adapter averaged, a personal one kept by each
  client as client state, mutual distillation; `federation.local_objective: feddat`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass(frozen=True)
class Method:
    """One row of a results table.

    Attributes:
        name: key used on the command line (`--methods`), in cell ids and MLflow tags.
        label: how the paper's tables name it.
        group: "selection" (Table A) or "peft" (Table B).
        overrides: dot-key -> value applied to the task config.
    """

    name: str
    label: str
    group: Literal["selection", "peft"]
    overrides: dict[str, object] = field(default_factory=dict)


def _scored(name: str, label: str, scorer: str) -> Method:
    return Method(name, label, "selection", {"selection.method": "top_k", "selection.scorer": scorer,
                                             "model.unit_mode": "layer"})


def _rule(name: str, label: str, selector: str) -> Method:
    return Method(name, label, "selection", {"selection.method": selector, "model.unit_mode": "layer"})


def _peft(name: str, label: str, unit_mode: str) -> Method:
    return Method(name, label, "peft", {"selection.method": "full", "model.unit_mode": unit_mode})


# Table A, in the paper's order (docs/METHOD.md §5 lists the baselines, then LNTK-only and F3OCUS).
SELECTION_METHODS: tuple[Method, ...] = (
    _rule("fd", "Federated Dropout", "fed_dropout"),
    _rule("last_k", "Last-K", "last_k"),
    _scored("magnitude", "Magnitude", "magnitude"),
    _scored("fishmask", "FishMask", "fisher"),
    _scored("gradflow", "GradFlow", "gradflow"),
    _scored("grasp", "GraSP", "grasp"),
    _scored("snip", "SNIP", "snip"),
    _scored("rgn", "RGN", "rgn"),
    _scored("synflow", "SynFlow", "synflow"),
    _scored("fedselect", "FedSelect", "fedselect"),
    _scored("spt", "SPT", "spt"),
    _rule("random", "Random", "random"),
    Method("lntk_only", "LNTK-only", "selection", {"selection.method": "lntk", "selection.scorer": "lntk",
                                                   "model.unit_mode": "layer"}),
    Method("f3ocus", "F3OCUS", "selection", {"selection.method": "f3ocus", "selection.scorer": "lntk",
                                             "model.unit_mode": "layer"}),
)

# Table B: PEFT baselines (every unit, parameter-efficient unit modes) and F3OCUS on LoRA adapters.
PEFT_METHODS: tuple[Method, ...] = (
    _peft("full_ft", "Full fine-tuning", "layer"),
    _peft("adapters_all", "Adapters (all units)", "bottleneck"),
    _peft("lora_all", "LoRA (all units)", "adapter"),
    _peft("layernorm", "LayerNorm tuning", "layernorm"),
    _peft("bitfit", "Bias tuning (BitFit)", "bias"),
    _peft("prompt", "Prompt tuning (PromptFL)", "prompt"),
    Method("f3ocus_lora", "F3OCUS (LoRA units)", "peft", {"selection.method": "f3ocus", "selection.scorer": "lntk",
                                                          "model.unit_mode": "adapter"}),
    # FedDAT (f3ocus/models/feddat.py): shared bottleneck adapters averaged, personal ones kept by each client.
    Method("feddat", "FedDAT", "peft", {"selection.method": "full", "model.unit_mode": "dual_adapter",
                                        "federation.local_objective": "feddat"}),
)

METHODS: dict[str, Method] = {method.name: method for method in (*SELECTION_METHODS, *PEFT_METHODS)}
