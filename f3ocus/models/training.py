"""Local training and evaluation of a `VqaModel` on pre-encoded examples.

It owns `EncodedShard` (a client's examples, encoded once by the processor and kept as tensors),
`encode_examples`, `train_epochs` (AdamW over whatever currently has `requires_grad`, i.e. the
round's selected units) and `evaluate` (closed-set accuracy and loss). Both leave `requires_grad`
and train/eval mode as they found them; randomness comes only from the caller's `torch.Generator`.
Shards stay on the CPU; each batch is moved to the model's device (`f3ocus.utils.device.model_device`),
and shuffling draws from the caller's CPU generator, so the batch order is the same on every device.
`precision` "bf16" runs forward and backward under bfloat16 autocast (`f3ocus.utils.device.autocast`);
weights and AdamW state stay float32; `evaluate` returns float32 logits-derived numbers either way.

A shard holds one task kind. Multi-label rows (`question_type == "multilabel"`, `f3ocus.data.multilabel`)
are encoded with (n, C) float multi-hot labels over `model.findings` and the `MULTILABEL_INPUT` marker
in their tensors, so `model(**batch)` returns the multi-label logits; they train with binary
cross-entropy (`f3ocus.models.losses`) and `evaluate` scores them by micro-F1, macro-F1 and subset
accuracy (threshold 0.5 on the sigmoid; definitions and the zero-division rule in `f3ocus.data.multilabel`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from PIL import Image
from torch.nn import functional

from f3ocus.data.multilabel import f1_scores, is_multilabel, macro_auroc, multi_hot, subset_accuracy
from f3ocus.models._rng import draw_seed, isolated_rng
from f3ocus.models.losses import balanced_pos_weight, is_multilabel_target, mean_loss
from f3ocus.models.vqa_model import MULTILABEL_INPUT, TASK_MULTILABEL, TASK_VQA, VqaModel
from f3ocus.utils.device import autocast, model_device, to_device

IGNORE = -1
# Sequence-shaped processor outputs and the value that pads them (input_ids uses the pad token id).
_SEQUENCE_PAD = {"attention_mask": 0, "token_type_ids": 0, "mm_token_type_ids": 0}


@dataclass(frozen=True)
class EncodedShard:
    """Encoded examples.

    Attributes:
        tensors: processor outputs, each with leading dim n (e.g. input_ids (n, T), pixel_values (n, 3, H, W));
            multi-label shards also hold the marker `MULTILABEL_INPUT` (n,) bool.
        labels: "vqa": (n,) long, index into `model.answers`, -1 for answers outside the closed set;
            "multilabel": (n, C) float multi-hot targets over `model.findings`.
        kind: "vqa" or "multilabel".
    """

    tensors: dict[str, torch.Tensor]
    labels: torch.Tensor
    kind: str = TASK_VQA

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def batch(self, rows: torch.Tensor, device: torch.device | None = None) -> dict[str, torch.Tensor]:
        """Inputs of the given rows (long (b,), on the shard's device), with all-padding sequence columns
        trimmed, moved to `device` (None: where the shard is)."""
        batch = _trim_padding({key: value[rows] for key, value in self.tensors.items()})
        return batch if device is None else to_device(batch, device)

    def subset(self, rows: torch.Tensor) -> "EncodedShard":
        """The shard of the given rows (long (b,)) only, same kind."""
        return EncodedShard({key: value[rows] for key, value in self.tensors.items()}, self.labels[rows], self.kind)


@dataclass(frozen=True)
class EvalResult:
    """Closed-set evaluation: accuracy over all n rows (label -1 counts as wrong), mean CE loss over
    rows with a known label (nan if none), n, and predictions (n,) long answer indices.

    Multi-label shards (`kind` "multilabel"): accuracy = subset accuracy, loss = mean BCE over rows and
    classes, predictions (n, C) bool, and `f1` / `f1_macro` (micro / macro F1) and `auroc_macro` (macro AUROC of
    the logits; all None for VQA shards).
    """

    accuracy: float
    loss: float
    n: int
    predictions: torch.Tensor
    f1: float | None = None
    f1_macro: float | None = None
    kind: str = TASK_VQA
    auroc_macro: float | None = None


def encode_examples(model: VqaModel, images: Sequence[Image.Image], questions: Sequence[str],
                    answers: Sequence[str], batch_size: int = 64, *,
                    question_types: Sequence[str] | None = None) -> EncodedShard:
    """Encode n examples with the model's processor, `batch_size` at a time.

    Args:
        question_types: the rows' `question_type`; rows of type "multilabel" make a multi-label shard
            (all rows must then be; None = VQA rows).

    Returns:
        `EncodedShard`; sequences are right/left padded (as the tokenizer pads) to the longest row.

    Raises:
        ValueError: lengths differ, no example, VQA and multi-label rows mixed, multi-label rows for a model
            without findings, or a finding outside `model.findings`.
    """
    if not len(images) == len(questions) == len(answers):
        raise ValueError(f"lengths differ: {len(images)} images, {len(questions)} questions, {len(answers)} answers")
    kind = _shard_kind(question_types, len(answers))
    if kind == TASK_MULTILABEL:
        if not model.findings:
            raise ValueError("multi-label rows need a model built with findings (build_vqa_model(findings=...))")
        labels = torch.from_numpy(multi_hot(answers, model.findings)).to(torch.float32)  # (n, C)
    else:
        index = {answer: position for position, answer in enumerate(model.answers)}
        labels = torch.tensor([index.get(answer, IGNORE) for answer in answers], dtype=torch.long)
    parts = [model.encode(list(images[start:start + batch_size]), list(questions[start:start + batch_size]))
             for start in range(0, len(questions), batch_size)]
    if not parts:
        raise ValueError("encode_examples needs at least one example")
    tokenizer = getattr(model.processor, "tokenizer", None)
    pad_id = int(getattr(tokenizer, "pad_token_id", None) or 0)
    left = getattr(tokenizer, "padding_side", "right") == "left"
    tensors = {key: _concat([part[key] for part in parts], _pad_value(key, pad_id), left) for key in parts[0]}
    if kind == TASK_MULTILABEL:
        tensors[MULTILABEL_INPUT] = torch.ones(len(answers), dtype=torch.bool)
    return EncodedShard(tensors=tensors, labels=labels, kind=kind)


def _shard_kind(question_types: Sequence[str] | None, n: int) -> str:
    """"multilabel" when every row is multi-label, "vqa" when none is (or no types are given)."""
    if question_types is None:
        return TASK_VQA
    if len(question_types) != n:
        raise ValueError(f"{len(question_types)} question types for {n} examples")
    count = sum(is_multilabel(question_type) for question_type in question_types)
    if 0 < count < n:
        raise ValueError(f"{count} multi-label and {n - count} VQA rows in one shard; a shard holds one task kind")
    return TASK_MULTILABEL if count else TASK_VQA


HEAD_MODULES = ("head", "multilabel_head")  # `VqaModel`'s answer heads: the parameters `head_lr` applies to


def adamw(model: torch.nn.Module, params: Sequence[torch.nn.Parameter], *, lr: float, head_lr: float | None,
          weight_decay: float) -> torch.optim.AdamW:
    """AdamW over `params`, the answer heads' parameters (`HEAD_MODULES`) at `head_lr` (None = `lr`)."""
    heads = {id(param) for name, param in model.named_parameters() if name.split(".")[0] in HEAD_MODULES}
    groups = [{"params": [param for param in params if id(param) not in heads]},
              {"params": [param for param in params if id(param) in heads], "lr": lr if head_lr is None else head_lr}]
    return torch.optim.AdamW([group for group in groups if group["params"]], lr=lr, weight_decay=weight_decay)


def train_epochs(model: VqaModel, shard: EncodedShard, *, epochs: int, batch_size: int, lr: float,
                 weight_decay: float = 0.0, generator: torch.Generator, precision: str = "fp32",
                 head_lr: float | None = None) -> float:
    """Train the parameters that have `requires_grad` with AdamW and cross-entropy (for a multi-label shard:
    BCE with the client's class-balanced `pos_weight`, `f3ocus.models.losses.balanced_pos_weight`).

    Args:
        model: the model; its trainable set (see `VqaModel.set_trainable`) is what gets updated.
        shard: encoded examples; rows with label -1 do not contribute to the loss.
        epochs: passes over the shard.
        batch_size: rows per step.
        lr: AdamW learning rate.
        weight_decay: AdamW weight decay.
        generator: shuffling and in-model randomness (dropout) derive from it only (a CPU generator; the
            device's dropout stream is seeded from it too).
        precision: "fp32", or "bf16" for bfloat16 autocast of forward and backward.
        head_lr: learning rate of the answer heads' parameters (None = `lr`): a closed-set head is fresh for
            a task whose answers the foundation never saw, and at the backbone's rate it needs far more steps
            than a federated schedule gives.

    Returns:
        Mean training loss over all labelled rows seen (nan if none).
    """
    params = [param for param in model.parameters() if param.requires_grad]
    if not params:
        raise ValueError("train_epochs: no parameter requires grad (call set_trainable first)")
    device = model_device(model)
    optimizer = adamw(model, params, lr=lr, head_lr=head_lr, weight_decay=weight_decay)
    was_training = model.training
    total, count = torch.zeros((), dtype=torch.float64, device=device), 0  # summed on the device: no sync per step
    pos_weight = (balanced_pos_weight(shard.labels).to(device) if is_multilabel_target(shard.labels) else None)
    model.train()
    try:
        with isolated_rng(draw_seed(generator)):
            for _ in range(epochs):
                for rows in torch.randperm(len(shard), generator=generator).split(batch_size):
                    loss, labelled = _step(model, shard, rows, optimizer, pos_weight, device, precision)
                    if labelled:
                        total, count = total + loss.double() * labelled, count + labelled
    finally:
        optimizer.zero_grad(set_to_none=True)
        model.train(was_training)
    return float(total) / count if count else float("nan")


def _step(model: VqaModel, shard: EncodedShard, rows: torch.Tensor, optimizer: torch.optim.Optimizer,
          pos_weight: torch.Tensor | None, device: torch.device, precision: str) -> tuple[torch.Tensor | None, int]:
    """One optimiser step on `rows`; returns (mean loss as a 0-dim tensor on `device`, number of labelled rows)."""
    labels = shard.labels[rows]  # (b,) or (b, C), on the CPU: the count needs no device sync
    labelled = int(labels.shape[0]) if is_multilabel_target(labels) else int((labels != IGNORE).sum())
    if labelled == 0:
        return None, 0
    optimizer.zero_grad(set_to_none=True)
    with autocast(device, precision):
        logits = model(**shard.batch(rows, device))
    loss = mean_loss(logits.float(), labels.to(device, non_blocking=True), pos_weight)
    loss.backward()
    optimizer.step()
    return loss.detach(), labelled


@torch.no_grad()
def evaluate(model: VqaModel, shard: EncodedShard, batch_size: int = 128, precision: str = "fp32") -> EvalResult:
    """Closed-set accuracy and loss of `model` on `shard` (eval mode, no grad); F1 for a multi-label shard.

    Batches run on the model's device (under bf16 autocast for `precision` "bf16"); the logits come back
    to the CPU in float32 and every metric is computed there.

    Returns:
        `EvalResult`; rows labelled -1 count as wrong and are excluded from the loss.
    """
    device = model_device(model)
    was_training = model.training
    model.eval()
    try:
        with autocast(device, precision):
            logits = torch.cat([model(**shard.batch(rows, device)).float()
                                for rows in torch.arange(len(shard)).split(batch_size)]).cpu()  # (n, A)
    finally:
        model.train(was_training)
    if shard.kind == TASK_MULTILABEL:
        return _multilabel_result(logits, shard.labels)
    predictions = logits.argmax(dim=1)  # (n,)
    known = shard.labels != IGNORE
    correct = int((predictions[known] == shard.labels[known]).sum())
    loss = (float(functional.cross_entropy(logits[known], shard.labels[known])) if bool(known.any())
            else float("nan"))
    return EvalResult(accuracy=correct / max(len(shard), 1), loss=loss, n=len(shard), predictions=predictions)


def _multilabel_result(logits: torch.Tensor, targets: torch.Tensor) -> EvalResult:
    """F1 / subset accuracy / BCE of (n, C) multi-label logits against (n, C) multi-hot targets."""
    predicted = torch.sigmoid(logits) >= 0.5  # (n, C)
    truth = targets.to(torch.bool).cpu().numpy()
    micro, macro = f1_scores(predicted.cpu().numpy(), truth)
    loss = float(mean_loss(logits, targets.to(logits.device))) if len(targets) else float("nan")
    return EvalResult(accuracy=subset_accuracy(predicted.cpu().numpy(), truth), loss=loss, n=int(targets.shape[0]),
                      predictions=predicted, f1=micro, f1_macro=macro, kind=TASK_MULTILABEL,
                      auroc_macro=macro_auroc(logits.cpu().numpy(), truth))


def _pad_value(key: str, pad_id: int) -> int | None:
    """Padding value of a sequence-shaped key, None for keys that are not token sequences."""
    return pad_id if key == "input_ids" else _SEQUENCE_PAD.get(key)


def _concat(parts: list[torch.Tensor], pad_value: int | None, left: bool) -> torch.Tensor:
    """Concatenate batch parts, padding dim 1 of token sequences to the longest part."""
    if pad_value is None or parts[0].dim() != 2:
        return torch.cat(parts)
    length = max(part.shape[1] for part in parts)
    padded = [functional.pad(part, (length - part.shape[1], 0) if left else (0, length - part.shape[1]),
                             value=pad_value) for part in parts]
    return torch.cat(padded)


def _trim_padding(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop the sequence columns that are padding in every row (saves compute on short batches)."""
    mask = batch.get("attention_mask")
    if mask is None or mask.dim() != 2:
        return batch
    keep = mask.bool().any(dim=0)  # (T,)
    if bool(keep.all()):
        return batch
    return {key: value[:, keep] if key == "input_ids" or key in _SEQUENCE_PAD else value
            for key, value in batch.items()}
