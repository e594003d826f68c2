"""Importance scorers on a multi-label batch: (n, C) multi-hot labels, inputs carrying the multi-label marker.

The per-sample loss is BCE summed over the C classes (`f3ocus.models.losses.per_sample_loss`) and the
logit kernel's outputs f are the C multi-label logits."""

import numpy as np
import pytest
import torch
from PIL import Image
from torch.func import functional_call, jacrev

from f3ocus.data.multilabel import CXR_FINDINGS, MULTILABEL
from f3ocus.importance.grad_norm import GradNormScorer
from f3ocus.importance.lntk import LntkScorer
from f3ocus.models.losses import per_sample_loss
from tests.unit.importance.conftest import reference_eigenvalues

QUESTION = "which findings are present in this image?"


@pytest.fixture(scope="module")
def multilabel_batch():
    """Tiny scratch LLaVA with both heads, and 3 encoded multi-label rows: (model, inputs, labels (3, 15))."""
    from f3ocus.models.registry import build_vqa_model
    from f3ocus.models.training import encode_examples

    model = build_vqa_model("llava", "scratch", answers=["yes", "no"], findings=CXR_FINDINGS)
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)) for _ in range(3)]
    shard = encode_examples(model, images, [QUESTION] * 3, ["cardiomegaly|edema", "no finding", "mass"],
                            question_types=[MULTILABEL] * 3)
    return model, shard.batch(torch.arange(3)), shard.labels


def test_per_sample_loss_is_bce_summed_over_classes():
    logits = torch.tensor([[0.5, -1.0, 2.0], [0.0, 0.0, 0.0]])
    targets = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    expected = -(targets * torch.log(torch.sigmoid(logits))
                 + (1 - targets) * torch.log(1 - torch.sigmoid(logits))).sum(dim=1)
    torch.testing.assert_close(per_sample_loss(logits, targets), expected)


@pytest.mark.parametrize("scorer", [GradNormScorer(), LntkScorer(), LntkScorer("logit", "exact")],
                         ids=["grad_norm", "lntk", "lntk_exact_logit"])
def test_scores_on_a_multilabel_batch_are_finite_and_sum_to_one(multilabel_batch, scorer):
    model, inputs, labels = multilabel_batch
    flags = {name: param.requires_grad for name, param in model.named_parameters()}
    scores = scorer.score(model, inputs, labels)
    assert scores.shape == (len(model.units),)
    assert np.all(np.isfinite(scores)) and np.all(scores >= 0) and scores.sum() == pytest.approx(1.0)
    assert scores.max() > scores.min()  # not the uniform fallback of an all-zero gradient
    assert {name: param.requires_grad for name, param in model.named_parameters()} == flags


def test_ghost_grams_match_the_exact_per_sample_bce_gradients(multilabel_batch):
    model, inputs, labels = multilabel_batch
    scorer = LntkScorer("grad", "ghost")
    ghost = scorer.eigenvalues(model, inputs, labels)
    assert scorer.last_fallback == []  # every unit tensor through the hooks, none per sample
    exact = LntkScorer("grad", "exact").eigenvalues(model, inputs, labels)
    np.testing.assert_allclose(ghost, exact, rtol=1e-4, atol=1e-12)
    # And the dense reference: one backward per sample of the summed BCE.
    unit = model.units[-1]
    names = model.unit_parameter_names()[unit]
    own = {name: param.detach() for name, param in model.named_parameters()}
    jacobian = jacrev(lambda tensors: per_sample_loss(functional_call(model, {**own, **tensors}, args=(),
                                                                      kwargs=inputs), labels))(
        {name: own[name] for name in names})
    dense = torch.cat([jacobian[name].reshape(3, -1) for name in names], dim=1).double()  # (n, p)
    assert ghost[-1] == pytest.approx(float(torch.linalg.eigvalsh(dense @ dense.T)[-1]), rel=1e-4)


def test_logit_kernel_uses_the_multilabel_logits(multilabel_batch):
    model, inputs, labels = multilabel_batch
    units = (model.units[0], model.units[-1])
    exact = LntkScorer("logit", "exact").eigenvalues(model, inputs, labels, units)
    reference = reference_eigenvalues(model, inputs, labels, "logit", units)  # f = model(**inputs): (3, 15)
    np.testing.assert_allclose(exact, reference, rtol=1e-4)
    assert model(**inputs).shape == (3, len(CXR_FINDINGS))
