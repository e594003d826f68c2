"""The multi-label path of the model: F1 definitions, the second head, encoding, BCE training, evaluation."""

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from f3ocus.data.multilabel import CXR_FINDINGS, MULTILABEL, f1_scores, macro_auroc, multi_hot, subset_accuracy
from f3ocus.models.registry import build_vqa_model
from f3ocus.models.training import EncodedShard, encode_examples, evaluate, train_epochs
from f3ocus.models.vqa_model import MULTILABEL_INPUT

ANSWERS = ("red", "green", "yes", "no")
QUESTION = "which findings are present in this image?"

# 4 rows x 3 classes. Per class (TP, FP, FN): c0 (1, 1, 1) -> F1 1/2; c1 (2, 0, 0) -> 1; c2 (0, 1, 0) -> 0.
TARGETS = np.array([[1, 0, 0], [0, 1, 0], [1, 1, 0], [0, 0, 0]], dtype=bool)
PREDICTED = np.array([[1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 0, 1]], dtype=bool)


class FixedLogits(nn.Module):
    """Returns its input `x` as the logits (so a shard's tensors decide the predictions)."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x: torch.Tensor, multilabel: torch.Tensor | None = None) -> torch.Tensor:
        return x * self.scale


class ToyMultiLabel(nn.Module):
    """Linear(4, 3) on features x: a learnable multi-label problem when targets are signs of x."""

    def __init__(self) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.linear = nn.Linear(4, 3)
        with torch.no_grad():
            self.linear.weight.copy_(0.01 * torch.randn(3, 4, generator=generator))
            self.linear.bias.zero_()

    def forward(self, x: torch.Tensor, multilabel: torch.Tensor | None = None) -> torch.Tensor:
        return self.linear(x)


def _multilabel_shard(x: torch.Tensor, targets: torch.Tensor) -> EncodedShard:
    return EncodedShard(tensors={"x": x, MULTILABEL_INPUT: torch.ones(len(x), dtype=torch.bool)},
                        labels=targets.float(), kind=MULTILABEL)


def _images(n: int, seed: int = 0) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)) for _ in range(n)]


# ------------------------------------------------------------------------------------------- metrics
def test_micro_and_macro_f1_match_the_hand_computed_4x3_example():
    # Prepare / Execute
    micro, macro = f1_scores(PREDICTED, TARGETS)
    # Assert: micro = 2·3 / (2·3 + 2 + 1); macro = (1/2 + 1 + 0) / 3; subset: only row 0 matches exactly.
    assert micro == pytest.approx(6 / 9)
    assert macro == pytest.approx(0.5)
    assert subset_accuracy(PREDICTED, TARGETS) == pytest.approx(0.25)


def test_macro_f1_leaves_out_a_class_absent_from_targets_and_predictions():
    targets, predicted = TARGETS.copy(), PREDICTED.copy()
    predicted[3, 2] = False  # class 2 now occurs nowhere: averaged over classes 0 and 1 only
    micro, macro = f1_scores(predicted, targets)
    assert macro == pytest.approx((0.5 + 1.0) / 2)
    assert micro == pytest.approx(6 / 8)
    assert subset_accuracy(predicted, targets) == pytest.approx(0.5)


def test_zero_division_gives_zero():
    empty = np.zeros((0, 3), dtype=bool)
    assert f1_scores(empty, empty) == (0.0, 0.0)
    assert subset_accuracy(empty, empty) == 0.0
    assert f1_scores(np.zeros((2, 3), bool), np.zeros((2, 3), bool)) == (0.0, 0.0)


def test_evaluate_scores_a_multilabel_shard_by_f1_with_threshold_half():
    # Logits +-2 where PREDICTED is True/False; one exact 0 (sigmoid 0.5) on a predicted-True cell.
    logits = torch.where(torch.from_numpy(PREDICTED), 2.0, -2.0)
    logits[0, 0] = 0.0
    result = evaluate(FixedLogits(), _multilabel_shard(logits, torch.from_numpy(TARGETS)))
    assert result.kind == MULTILABEL and result.n == 4
    assert result.f1 == pytest.approx(6 / 9) and result.f1_macro == pytest.approx(0.5)
    assert result.accuracy == pytest.approx(0.25)
    assert torch.equal(result.predictions, torch.from_numpy(PREDICTED))
    expected = nn.functional.binary_cross_entropy_with_logits(logits, torch.from_numpy(TARGETS).float())
    assert result.loss == pytest.approx(float(expected))


def test_multi_hot_reads_findings_in_class_order_and_rejects_unknown_ones():
    targets = multi_hot(["effusion|atelectasis", "no finding", " Cardiomegaly "])
    assert targets.shape == (3, len(CXR_FINDINGS))
    assert [CXR_FINDINGS[j] for j in np.flatnonzero(targets[0])] == ["atelectasis", "effusion"]
    assert [CXR_FINDINGS[j] for j in np.flatnonzero(targets[1])] == ["no finding"]
    assert [CXR_FINDINGS[j] for j in np.flatnonzero(targets[2])] == ["cardiomegaly"]
    with pytest.raises(ValueError, match="row 1: unknown finding 'tumour'"):
        multi_hot(["edema", "tumour"])


# ------------------------------------------------------------------------------------------ training
def test_bce_training_reduces_the_loss_on_a_learnable_toy_shard():
    # Prepare: targets are the signs of the first three features (linearly separable).
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(64, 4, generator=generator)
    shard = _multilabel_shard(x, x[:, :3] > 0)
    model = ToyMultiLabel()
    before = evaluate(model, shard)
    # Execute
    loss = train_epochs(model, shard, epochs=30, batch_size=16, lr=0.05, generator=torch.Generator().manual_seed(0))
    after = evaluate(model, shard)
    # Assert
    assert np.isfinite(loss)
    assert after.loss < 0.5 * before.loss
    assert after.f1 > 0.9 > before.f1


# ----------------------------------------------------------------------------------------- the model
@pytest.fixture(scope="module")
def mixed_model():
    return build_vqa_model("vilt", "scratch", answers=ANSWERS, findings=CXR_FINDINGS, seed=0)


def test_forward_returns_multilabel_logits_for_inputs_with_the_marker(mixed_model):
    answers = ["cardiomegaly|effusion", "no finding", "edema"]
    shard = encode_examples(mixed_model, _images(3), [QUESTION] * 3, answers, question_types=[MULTILABEL] * 3)
    assert shard.kind == MULTILABEL and shard.labels.dtype == torch.float32
    assert shard.labels.shape == (3, len(CXR_FINDINGS)) and shard.labels.sum(dim=1).tolist() == [2.0, 1.0, 1.0]
    assert shard.tensors[MULTILABEL_INPUT].tolist() == [True] * 3
    batch = shard.batch(torch.arange(3))
    assert mixed_model(**batch).shape == (3, len(CXR_FINDINGS))
    without = {key: value for key, value in batch.items() if key != MULTILABEL_INPUT}
    assert mixed_model(**without).shape == (3, len(ANSWERS))
    with pytest.raises(ValueError, match="mixes"):
        mixed_model(**{**batch, MULTILABEL_INPUT: torch.tensor([True, False, True])})


def test_encode_examples_rejects_mixed_rows_and_a_model_without_findings(mixed_model):
    with pytest.raises(ValueError, match="one task kind"):
        encode_examples(mixed_model, _images(2), [QUESTION, "is it red"], ["edema", "yes"],
                        question_types=[MULTILABEL, "color"])
    vqa_only = build_vqa_model("vilt", "scratch", answers=ANSWERS)
    with pytest.raises(ValueError, match="findings"):
        encode_examples(vqa_only, _images(1), [QUESTION], ["edema"], question_types=[MULTILABEL])


def test_each_task_trains_and_uploads_only_its_own_head(mixed_model):
    heads = mixed_model.unit_parameter_names()["head"]
    assert sorted(heads) == ["head.bias", "head.weight", "multilabel_head.bias", "multilabel_head.weight"]
    assert mixed_model.task_kinds == ("vqa", "multilabel")
    assert mixed_model.task_head_names("vqa") == ["head.weight", "head.bias"]
    assert mixed_model.task_head_names("multilabel") == ["multilabel_head.weight", "multilabel_head.bias"]
    mask = [False] * len(mixed_model.units)
    mixed_model.set_trainable(mask, task_kind="multilabel")
    assert {n for n, p in mixed_model.named_parameters() if p.requires_grad} == {"multilabel_head.weight",
                                                                                "multilabel_head.bias"}
    state = mixed_model.trainable_state([mixed_model.units[0]], task_kind="vqa")
    assert "head.weight" in state and not any(name.startswith("multilabel_head.") for name in state)
    assert len(mixed_model.trainable_state()) == len(mixed_model.trainable_state(task_kind=None))
    mixed_model.set_trainable([True] * len(mixed_model.units))


def test_findings_leave_the_vqa_model_unchanged():
    images = _images(2)
    plain = build_vqa_model("llava", "scratch", answers=ANSWERS, seed=3)
    mixed = build_vqa_model("llava", "scratch", answers=ANSWERS, findings=CXR_FINDINGS, seed=3)
    plain_state, mixed_state = plain.state_dict(), mixed.state_dict()
    assert set(mixed_state) - set(plain_state) == {"multilabel_head.weight", "multilabel_head.bias"}
    assert all(torch.equal(value, mixed_state[name]) for name, value in plain_state.items())
    # Seeded apart: the multi-label head is no copy of the answer head's first rows.
    assert not torch.equal(mixed.multilabel_head.weight[:len(ANSWERS)], mixed.head.weight)
    shard = encode_examples(plain, images, ["is it red", "what color"], ["yes", "red"])
    batch = shard.batch(torch.arange(2))
    assert torch.equal(plain(**batch), mixed(**batch))


def test_a_classification_only_model_has_no_answer_head():
    model = build_vqa_model("vilt", "scratch", answers=(), findings=CXR_FINDINGS)
    assert model.head is None and model.task_kinds == ("multilabel",)
    assert model.unit_parameter_names()["head"] == ["multilabel_head.weight", "multilabel_head.bias"]
    shard = encode_examples(model, _images(2), [QUESTION] * 2, ["edema", "mass|nodule"],
                            question_types=[MULTILABEL] * 2)
    assert model(**shard.batch(torch.arange(2))).shape == (2, len(CXR_FINDINGS))
    with pytest.raises(ValueError, match="no answer head"):
        model(**{k: v for k, v in shard.batch(torch.arange(2)).items() if k != MULTILABEL_INPUT})
    with pytest.raises(ValueError, match="non-empty"):
        build_vqa_model("vilt", "scratch", answers=())


def test_bce_training_of_a_scratch_vlm_fits_its_multilabel_rows():
    # Prepare: 8 rows whose findings follow the image's brightness (bright -> cardiomegaly, dark -> edema).
    model = build_vqa_model("vilt", "scratch", answers=ANSWERS, findings=CXR_FINDINGS, seed=0)
    rng = np.random.default_rng(0)
    images, answers = [], []
    for index in range(8):
        bright = index % 2 == 0
        images.append(Image.fromarray(rng.integers(160 if bright else 0, 256 if bright else 96, (32, 32, 3),
                                                   dtype=np.uint8)))
        answers.append("cardiomegaly|effusion" if bright else "edema")
    shard = encode_examples(model, images, [QUESTION] * 8, answers, question_types=[MULTILABEL] * 8)
    before = evaluate(model, shard)
    # Execute
    train_epochs(model, shard, epochs=8, batch_size=4, lr=3e-3, generator=torch.Generator().manual_seed(0))
    after = evaluate(model, shard)
    # Assert
    assert after.loss < before.loss
    assert after.f1 > before.f1


def test_balanced_pos_weight_is_the_clipped_negative_to_positive_ratio():
    from f3ocus.models.losses import MAX_POS_WEIGHT, balanced_pos_weight

    # 4 rows, 4 classes: positives 1, 2, 0, 4 -> ratios 3/1, 2/2, (none: 1), 0/4 -> clipped to >= 1
    targets = torch.tensor([[1, 1, 0, 1], [0, 1, 0, 1], [0, 0, 0, 1], [0, 0, 0, 1]], dtype=torch.float32)
    assert balanced_pos_weight(targets).tolist() == [3.0, 1.0, 1.0, 1.0]
    rare = torch.zeros(50, 1)
    rare[0, 0] = 1.0  # 49 negatives per positive
    assert balanced_pos_weight(rare).tolist() == [MAX_POS_WEIGHT]


def test_macro_auroc_by_hand() -> None:
    scores = np.array([[0.9, 0.2, 0.5], [0.8, 0.7, 0.5], [0.3, 0.1, 0.5], [0.1, 0.9, 0.5]])
    targets = np.array([[1, 0, 1], [0, 1, 1], [1, 0, 1], [0, 0, 1]], dtype=bool)
    # class 0: positives {0.9, 0.3}, negatives {0.8, 0.1}: pairs won 0.9>0.8, 0.9>0.1, 0.3>0.1 -> 3/4.
    # class 1: positive {0.7}, negatives {0.2, 0.1, 0.9}: wins over 0.2 and 0.1 -> 2/3.
    # class 2: no negative row -> no AUROC, left out of the mean.
    assert macro_auroc(scores, targets) == pytest.approx((3 / 4 + 2 / 3) / 2)
    # ties count half; a monotone rescaling (all logits shifted below 0.5) leaves it unchanged, unlike F1.
    assert macro_auroc(np.array([[0.5], [0.5]]), np.array([[1], [0]], dtype=bool)) == pytest.approx(0.5)
    assert macro_auroc(scores - 10.0, targets) == pytest.approx(macro_auroc(scores, targets))
    assert np.isnan(macro_auroc(scores[:, 2:], targets[:, 2:]))
    with pytest.raises(ValueError, match="shape"):
        macro_auroc(scores, targets[:, :2])
