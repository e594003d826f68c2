"""The PEFT baselines of the paper as unit modes: bottleneck adapters, LayerNorm tuning, BitFit, prompt tuning.

A unit mode says which tensors a selectable unit trains (`VqaModel.unit_mode`); a PEFT baseline is a
unit mode run with the `full` selector (every client trains every unit), so it shares the engine,
masked FedAvg and byte counting with F3OCUS. This module owns the four modes `VqaModel` does not
implement itself ("layer": the block's weights, "adapter": peft LoRA in every Linear of the block):
  - "bottleneck": one Houlsby/Pfeiffer bottleneck adapter per unit on the unit's output hidden states,
    h + W_up relu(W_down h + b_down) + b_up (d -> r -> d, W_up = b_up = 0 so the model is unchanged at
    init), kept as children `bottleneck.<unit>` of the `VqaModel` and applied by a forward hook on the
    unit module. peft 0.21 ships no Houlsby/Pfeiffer adapter on hidden states, so it is built here.
  - "layernorm": the weights/biases of the unit's normalisation modules (class name containing "Norm":
    nn.LayerNorm, LlamaRMSNorm, ...). Selected in place: peft's `LNTuningConfig` wraps each norm in a
    copy with renamed tensors, which the no-wrapper design (same names in every mode) does not want.
  - "bias": BitFit, every tensor named `*.bias` inside the unit, norm biases included. A unit without
    biases (LLaMA blocks) owns no tensor; a family whose units have none at all is rejected at build.
  - "prompt": PromptFL/CoOp learned context, P vectors that replace the input embeddings of P
    placeholder tokens prefixed to every question (k-th placeholder of a row <- vector k). The vectors
    are child `prompt` of the `VqaModel` and train with the head, every client every round; units own
    nothing in this mode.
  - "dual_adapter": FedDAT's dual-adapter teacher (`f3ocus.models.feddat`), built on the bottleneck
    adapter: each unit's output gets a `DualAdapter` of three bottleneck adapters of the same shape,
    `shared` (the unit's tensors: averaged by the server), `personal` (the client's own, kept as client
    state, never averaged) and `anchor` (a frozen copy of the shared adapter as received, set before local
    training). The student view applies h + A_shared(h); the teacher view (DAT) h + (A_personal(h) +
    A_anchor(h)) / 2.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

import torch
from PIL import Image
from torch import nn
from torch.nn import functional

from f3ocus.models._rng import isolated_rng
from f3ocus.models.family import FamilySpec
from f3ocus.models.units import UnitSpec

UnitMode = Literal["layer", "adapter", "bottleneck", "layernorm", "bias", "prompt", "dual_adapter"]
UNIT_MODES: tuple[str, ...] = get_args(UnitMode)
BOTTLENECK = "bottleneck"  # VqaModel child holding the adapters (ModuleDict keyed by `adapter_key`)
DUAL_ADAPTER = "dual_adapter"
PERSONAL_MARKER = ".personal."  # dual_adapter mode: the client-state tensors' names contain it
PROMPT = "prompt"  # VqaModel child holding the context vectors
INIT_STD = 0.02  # N(0, 0.02) for W_down and the prompt vectors (CoOp's context init)
_DRY_RUN_QUESTION = "what is shown?"
_DRY_RUN_IMAGE_SIDE = 32


@dataclass(frozen=True)
class ModeSettings:
    """Sizes of the PEFT modes (config `model.bottleneck_dim`, `model.prompt_length`).

    Attributes:
        bottleneck_dim: r, the bottleneck width of "bottleneck" mode (>= 1).
        prompt_length: P, the number of learned context vectors of "prompt" mode (>= 1).
    """

    bottleneck_dim: int = 16
    prompt_length: int = 4

    def __post_init__(self) -> None:
        if self.bottleneck_dim < 1 or self.prompt_length < 1:
            raise ValueError(f"bottleneck_dim and prompt_length must be >= 1, got {self.bottleneck_dim}, "
                             f"{self.prompt_length}")


# ---------------------------------------------------------------------------------------- bottleneck
class BottleneckAdapter(nn.Module):
    """h -> h + up(relu(down(h))) on the last dim; 2·d·r + r + d parameters."""

    def __init__(self, dim: int, bottleneck_dim: int) -> None:
        """Build with W_down ~ N(0, INIT_STD) from the global RNG (callers seed it), b_down = W_up = b_up = 0."""
        super().__init__()
        self.down = nn.Linear(dim, bottleneck_dim)
        self.up = nn.Linear(bottleneck_dim, dim)
        with torch.no_grad():
            nn.init.normal_(self.down.weight, mean=0.0, std=INIT_STD)
            self.down.bias.zero_()
            self.up.weight.zero_()  # the adapter is the identity at init
            self.up.bias.zero_()

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """(..., d) -> (..., d), computed in the adapter's dtype and returned in the input's."""
        x = hidden.to(self.down.weight.dtype)
        return (x + self.delta(x)).to(hidden.dtype)

    def delta(self, x: torch.Tensor) -> torch.Tensor:
        """The adapter's residual branch, W_up relu(W_down x + b_down) + b_up, in `x`'s dtype."""
        return self.up(functional.relu(self.down(x)))

    def adapt_output(self, module: nn.Module, args: tuple, output: Any) -> Any:
        """Forward hook on the unit module: adapt the output tensor, or element 0 of a tuple output.

        A bound method (not a closure), so `copy.deepcopy` of the model rebinds it to the copied adapter.

        Raises:
            TypeError: an output that is neither a tensor nor a tuple starting with one.
        """
        del module, args
        if isinstance(output, torch.Tensor):
            return self(output)
        if isinstance(output, tuple) and output and isinstance(output[0], torch.Tensor):
            return (self(output[0]), *output[1:])
        raise TypeError(f"bottleneck adapter: unit output of type {type(output).__name__} is not a tensor "
                        "or a tuple starting with one")


class DualAdapter(nn.Module):
    """FedDAT's adapters of one unit: `shared`, `personal`, `anchor` (see the module docstring).

    `teacher` switches the view the forward hook applies: False (default) = the student / global model,
    h + A_shared(h); True = the dual-adapter teacher, h + (A_personal(h) + A_anchor(h)) / 2.
    """

    def __init__(self, dim: int, bottleneck_dim: int) -> None:
        super().__init__()
        self.shared = BottleneckAdapter(dim, bottleneck_dim)
        self.personal = BottleneckAdapter(dim, bottleneck_dim)
        self.anchor = BottleneckAdapter(dim, bottleneck_dim)
        self.anchor.requires_grad_(False)
        self.teacher = False

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        x = hidden.to(self.shared.down.weight.dtype)
        if self.teacher:
            # DEVIATION: the dual-adapter teacher averages its two adapters with fixed weights 1/2, as FedDAT's
            # released code does (its gating module is commented out there); no learned gate.
            out = x + (self.personal.delta(x) + self.anchor.delta(x)) / 2
        else:
            out = x + self.shared.delta(x)
        return out.to(hidden.dtype)

    adapt_output = BottleneckAdapter.adapt_output  # the same hook, calling this module's forward


def set_teacher_view(adapters: nn.ModuleDict, teacher: bool) -> None:
    """Switch every `DualAdapter` of `adapters` to the teacher (True) or the student view (False)."""
    for adapter in adapters.values():
        adapter.teacher = teacher


def copy_shared_to_anchor(adapters: nn.ModuleDict) -> None:
    """Make each unit's `anchor` a copy of its `shared` adapter (the shared adapter as received, frozen)."""
    with torch.no_grad():
        for adapter in adapters.values():
            for target, source in zip(adapter.anchor.parameters(), adapter.shared.parameters()):
                target.copy_(source)


def adapter_key(unit_name: str) -> str:
    """ModuleDict key of a unit's adapter ("vision.3" -> "vision_3"; keys may not contain dots)."""
    return unit_name.replace(".", "_")


def attach_bottleneck_adapters(spec: FamilySpec, backbone: nn.Module, processor: Any, units: Sequence[UnitSpec],
                               bottleneck_dim: int, seed: int, dual: bool = False) -> nn.ModuleDict:
    """Create one adapter per unit (a `DualAdapter` with `dual`) and hook it onto the unit's output.

    Args:
        spec: the backbone's family (its encode/pool run the dry run of `unit_output_dims`).
        backbone: the transformers model (hooks are registered on its unit modules).
        processor: the family's processor.
        units: the model's units, in order.
        bottleneck_dim: r.
        seed: seeds W_down (adapters drawn in unit order).
        dual: build FedDAT's `DualAdapter` (shared, personal, anchor) per unit ("dual_adapter" mode).

    Returns:
        ModuleDict {adapter_key(unit): BottleneckAdapter | DualAdapter}: the model's `bottleneck` child.
    """
    # DEVIATION: Houlsby puts two adapters inside each block (after attention and after the FFN, before
    # the residual add), Pfeiffer one after the FFN; here one adapter wraps the whole unit's output, the
    # only placement that needs no per-family module path and also covers connectors.
    dims = unit_output_dims(spec, backbone, processor, units)
    kind = DualAdapter if dual else BottleneckAdapter
    with isolated_rng(seed):
        adapters = nn.ModuleDict({adapter_key(unit.name): kind(dims[unit.name], bottleneck_dim) for unit in units})
    parameter = next(backbone.parameters(), None)
    if parameter is not None:
        adapters.to(parameter.device)
    for unit in units:  # prepend: transformers' output-capturing hooks (hidden_states) must see the adapted output
        backbone.get_submodule(unit.module_path).register_forward_hook(
            adapters[adapter_key(unit.name)].adapt_output, prepend=True)
    return adapters


def unit_output_dims(spec: FamilySpec, backbone: nn.Module, processor: Any,
                     units: Sequence[UnitSpec]) -> dict[str, int]:
    """Last-dim width of each unit's output (element 0 of a tuple), as the adapter hook will see it.

    Measured by a dry run (one blank image + one question through the family's encode and pool, eval
    mode, no grad, seeded private RNG), because block outputs are not declared anywhere uniform (a
    connector maps the vision width to the text width). A unit the dry run does not reach falls back to
    the `out_features` of its last nn.Linear in `named_modules()` order.

    Raises:
        ValueError: a unit neither reached by the dry run nor containing an nn.Linear.
    """
    dims: dict[str, int] = {}

    def recorder(name: str):
        def record(module: nn.Module, args: tuple, output: Any) -> None:
            first = output[0] if isinstance(output, tuple) else output
            dims.setdefault(name, int(first.shape[-1]))
        return record

    handles = [backbone.get_submodule(unit.module_path).register_forward_hook(recorder(unit.name))
               for unit in units]
    was_training = backbone.training
    try:
        _dry_run(spec, backbone, processor)
    finally:
        for handle in handles:
            handle.remove()
        backbone.train(was_training)
    for unit in units:
        if unit.name not in dims:
            dims[unit.name] = _last_linear_width(backbone.get_submodule(unit.module_path), unit.name)
    return dims


def _dry_run(spec: FamilySpec, backbone: nn.Module, processor: Any) -> None:
    """One eval-mode, no-grad forward of a blank image and a fixed question (global RNG untouched)."""
    image = Image.new("RGB", (_DRY_RUN_IMAGE_SIDE, _DRY_RUN_IMAGE_SIDE))
    parameter = next(backbone.parameters())
    inputs = {key: value.to(parameter.device) for key, value in
              spec.encode(processor, [image], [_DRY_RUN_QUESTION]).items()}
    backbone.eval()
    with torch.no_grad(), isolated_rng(0):
        spec.pool(backbone, inputs)


def _last_linear_width(module: nn.Module, unit_name: str) -> int:
    """`out_features` of the last nn.Linear of `module` (itself included) in `named_modules()` order."""
    linears = [sub for _, sub in module.named_modules() if isinstance(sub, nn.Linear)]
    if not linears:
        raise ValueError(f"bottleneck mode: unit {unit_name!r} was not reached by the dry-run forward and "
                         "contains no nn.Linear, so its output width is unknown")
    return int(linears[-1].out_features)


# ---------------------------------------------------------------------------------------- prompt
class PromptContext(nn.Module):
    """P learned context vectors written over the input embeddings of P placeholder tokens.

    Attributes:
        vectors: (P, D) parameter, D = the text input-embedding width.
        placeholder: the placeholder token's text (the tokenizer's mask token, else its unk token).
        placeholder_id: its id.
    """

    def __init__(self, length: int, dim: int, placeholder: str, placeholder_id: int) -> None:
        """Vectors ~ N(0, INIT_STD) from the global RNG (callers seed it)."""
        super().__init__()
        self.vectors = nn.Parameter(torch.randn(length, dim) * INIT_STD)
        self.placeholder = placeholder
        self.placeholder_id = int(placeholder_id)

    @property
    def length(self) -> int:
        return int(self.vectors.shape[0])

    def prefixed(self, questions: Sequence[str]) -> list[str]:
        """Each question with P space-separated placeholders in front."""
        prefix = " ".join([self.placeholder] * self.length)
        return [f"{prefix} {question}" for question in questions]

    def replace_placeholders(self, module: nn.Module, args: tuple, kwargs: dict, output: torch.Tensor) -> Any:
        """Forward hook (with kwargs) on the input embedding: rows' first P placeholders <- vectors 0..P-1.

        Only 2-D id batches are touched (a scalar lookup, e.g. of the image token id, passes through).
        Written with `torch.where` and an integer gather, so torch.func transforms see no data-dependent
        shapes.

        Raises:
            ValueError: a row with fewer than P placeholders (inputs not encoded by `VqaModel.encode`).
        """
        del module
        input_ids = args[0] if args else kwargs.get("input")
        if not isinstance(input_ids, torch.Tensor) or input_ids.dim() != 2:
            return None
        is_slot = input_ids == self.placeholder_id  # (B, T)
        if bool((is_slot.sum(dim=1) < self.length).any()):
            raise ValueError(f"prompt mode: a row holds fewer than {self.length} {self.placeholder!r} placeholders; "
                             "encode inputs with VqaModel.encode")
        rank = is_slot.long().cumsum(dim=1) - 1  # (B, T): index of each placeholder within its row
        slots = is_slot & (rank < self.length)  # (B, T)
        vectors = self.vectors.to(output.dtype)[rank.clamp(0, self.length - 1)]  # (B, T, D)
        return torch.where(slots.unsqueeze(-1), vectors, output)


def attach_prompt(backbone: nn.Module, processor: Any, length: int, seed: int) -> PromptContext:
    """Create the prompt vectors and hook them onto `backbone.get_input_embeddings()`.

    Returns:
        The `PromptContext` to register as the model's `prompt` child.

    Raises:
        ValueError: the tokenizer has no single-token mask or unk token to serve as placeholder.
    """
    placeholder, placeholder_id = _placeholder(getattr(processor, "tokenizer", processor))
    embedding = backbone.get_input_embeddings()
    with isolated_rng(seed):
        prompt = PromptContext(length, int(embedding.weight.shape[-1]), placeholder, placeholder_id)
    prompt.to(embedding.weight.device)
    embedding.register_forward_hook(prompt.replace_placeholders, with_kwargs=True, prepend=True)
    return prompt


def _placeholder(tokenizer: Any) -> tuple[str, int]:
    """(token, id) of the first of mask / unk token that encodes to exactly one id of its own.

    The mask token is preferred: questions never produce it, while unknown words map to unk in the
    word-level tiny tokenizers (only the first P placeholders of a row are replaced, so a later unk
    keeps its embedding either way). A token sharing its id with bos/eos/pad/cls/sep is unusable (OPT's
    unk is its bos `</s>`, which starts every row).

    Raises:
        ValueError: neither token is usable.
    """
    taken = {getattr(tokenizer, f"{role}_token_id", None) for role in ("bos", "eos", "pad", "cls", "sep")}
    for token in (getattr(tokenizer, "mask_token", None), getattr(tokenizer, "unk_token", None)):
        if token is None:
            continue
        ids = tokenizer(str(token), add_special_tokens=False)["input_ids"]
        if len(ids) == 1 and ids[0] not in taken:
            return str(token), int(ids[0])
    raise ValueError("prompt mode: the tokenizer has no mask or unk token of its own (one id, not also "
                     "bos/eos/pad/cls/sep) to use as placeholder")


# ---------------------------------------------------------------------------------------- ownership
def peft_unit_tensors(mode: UnitMode, backbone: nn.Module, unit: UnitSpec, prefix: str,
                      names: Sequence[str]) -> list[str]:
    """The tensors `unit` owns in a PEFT mode ("bottleneck", "layernorm", "bias", "prompt", "dual_adapter").

    Args:
        mode: the unit mode.
        backbone: the model's backbone.
        unit: the unit.
        prefix: the model's parameter-name prefix of the unit's module ("backbone.<module_path>.").
        names: all of the model's parameter names.

    Returns:
        Parameter names, in `names` order.

    Raises:
        ValueError: "layer"/"adapter" (VqaModel's own) or an unknown mode.
    """
    if mode == "bottleneck":
        adapter = f"{BOTTLENECK}.{adapter_key(unit.name)}."
        return [name for name in names if name.startswith(adapter)]
    if mode == DUAL_ADAPTER:  # only the shared adapter is the unit's (averaged); personal is client state
        adapter = f"{BOTTLENECK}.{adapter_key(unit.name)}.shared."
        return [name for name in names if name.startswith(adapter)]
    if mode == "prompt":
        return []
    inside = [name for name in names if name.startswith(prefix)]
    if mode == "bias":
        return [name for name in inside if name.rsplit(".", 1)[-1] == "bias"]
    if mode == "layernorm":
        norms = norm_parameter_suffixes(backbone.get_submodule(unit.module_path))
        return [name for name in inside if name[len(prefix):] in norms]
    raise ValueError(f"{mode!r} is not a PEFT unit mode")


def norm_parameter_suffixes(module: nn.Module) -> set[str]:
    """Dotted names (relative to `module`) of the tensors of its submodules whose class name has "Norm"."""
    return {f"{path}.{name}" if path else name
            for path, sub in module.named_modules() if "Norm" in type(sub).__name__
            for name, _ in sub.named_parameters(recurse=False)}


def check_unit_tensors(family: str, mode: UnitMode, owned: dict[str, list[str]], units: Sequence[str]) -> None:
    """A mode in which no unit owns a tensor trains nothing selectable: reject it ("prompt" excepted).

    Raises:
        ValueError: every unit owns 0 tensors; names the family and suggests other modes.
    """
    if mode == "prompt" or any(owned[unit] for unit in units):
        return
    raise ValueError(f"unit_mode {mode!r}: no unit of family {family!r} has a tensor to train in this mode; "
                     "use 'layernorm', 'bottleneck' or 'adapter' instead")
