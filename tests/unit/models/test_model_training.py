"""`encode_examples`, `train_epochs`, `evaluate` on tiny scratch models and synthetic colour VQA."""

from __future__ import annotations

import math

import torch

from f3ocus.models.registry import build_vqa_model
from f3ocus.models.training import EncodedShard, encode_examples, evaluate, train_epochs

from .conftest import ANSWERS, synthetic_examples


def _shard(family: str, n: int = 12):
    model = build_vqa_model(family, "scratch", answers=ANSWERS, seed=0)
    images, questions, answers = synthetic_examples(n)
    return model, encode_examples(model, images, questions, answers, batch_size=5)


def test_encode_examples_pads_batches_to_one_length_and_maps_labels(family: str) -> None:
    model = build_vqa_model(family, "scratch", answers=ANSWERS)
    images, questions, answers = synthetic_examples(7)
    answers[0] = "purple"

    shard = encode_examples(model, images, questions, answers, batch_size=3)
    whole = model.encode(images, questions)

    assert len(shard) == 7 and shard.labels[0].item() == -1
    assert shard.labels[1:].tolist() == [ANSWERS.index(answer) for answer in answers[1:]]
    assert all(value.shape[0] == 7 for value in shard.tensors.values())
    torch.testing.assert_close(model(**shard.batch(torch.arange(7))), model(**whole))


def test_training_reduces_loss_and_is_deterministic(family: str) -> None:
    runs = []
    for _ in range(2):
        model, shard = _shard(family)
        before = evaluate(model, shard).loss
        train_epochs(model, shard, epochs=4, batch_size=4, lr=3e-3, generator=torch.Generator().manual_seed(7))
        runs.append((before, evaluate(model, shard).loss, model.trainable_state()))

    (before, after, state), (_, after_again, state_again) = runs
    assert after < before
    assert after == after_again
    assert all(torch.equal(state[name], state_again[name]) for name in state)


def test_train_and_evaluate_restore_mode_and_requires_grad(family: str) -> None:
    model, shard = _shard(family, n=4)
    model.set_trainable([index == 0 for index in range(len(model.units))], train_head=False)
    flags = {name: param.requires_grad for name, param in model.named_parameters()}

    for mode in (True, False):
        model.train(mode)
        train_epochs(model, shard, epochs=1, batch_size=4, lr=1e-3, generator=torch.Generator().manual_seed(0))
        evaluate(model, shard)
        assert model.training is mode and model.backbone.training is mode
    assert {name: param.requires_grad for name, param in model.named_parameters()} == flags
    assert all(param.grad is None for param in model.parameters())


def test_evaluate_counts_unknown_answers_wrong_and_excludes_them_from_loss(family: str) -> None:
    model, shard = _shard(family, n=6)
    result = evaluate(model, shard, batch_size=4)
    forced = EncodedShard(tensors=shard.tensors, labels=result.predictions.clone())
    forced.labels[:2] = -1

    perfect = evaluate(model, forced)

    assert result.n == 6 and result.predictions.shape == (6,)
    assert math.isclose(perfect.accuracy, 4 / 6)
    assert perfect.loss < result.loss or math.isclose(perfect.loss, result.loss)
    unknown = evaluate(model, EncodedShard(tensors=shard.tensors, labels=torch.full((6,), -1)))
    assert unknown.accuracy == 0.0 and math.isnan(unknown.loss)


def test_head_lr_moves_the_answer_head_at_its_own_rate() -> None:
    """AdamW's first step moves every parameter with a gradient by its group's lr (|m / sqrt(v)| = 1)."""
    model, shard = _shard("vilt", n=4)
    before = {name: param.detach().clone() for name, param in model.named_parameters()}

    train_epochs(model, shard, epochs=1, batch_size=4, lr=1e-4, head_lr=1e-2, generator=torch.Generator().manual_seed(0))

    moved = {name: float((param.detach() - before[name]).abs().max()) for name, param in model.named_parameters()}
    heads = [name for name in moved if name.startswith("head.")]
    body = [name for name in moved if not name.startswith("head.") and moved[name] > 0]
    assert heads and body
    assert all(abs(moved[name] - 1e-2) < 1e-4 for name in heads)
    assert all(moved[name] < 1.01e-4 for name in body)
