"""FedDAT (f3ocus/models/feddat.py): distillation losses and adapter views by hand, the local step on tiny ViLT."""

from __future__ import annotations

import math

import pytest
import torch

from f3ocus.models.feddat import FedDatObjective, binary_distillation_loss, distillation_loss
from f3ocus.models.local_objectives import LocalSettings, build_local_objective
from f3ocus.models.peft_modes import DualAdapter, copy_shared_to_anchor, set_teacher_view
from f3ocus.models.registry import build_vqa_model
from f3ocus.models.training import encode_examples

from .conftest import ANSWERS, synthetic_examples


# ------------------------------------------------------------------------------------------ losses
@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_distillation_loss_is_the_tempered_kl_by_hand(temperature):
    # teacher/T = (0, ln 3) -> p = (1/4, 3/4); student 0 -> q = (1/2, 1/2)
    teacher = torch.tensor([[0.0, temperature * math.log(3.0)]])
    student = torch.zeros(1, 2)
    expected = (0.25 * math.log(0.25 / 0.5) + 0.75 * math.log(0.75 / 0.5)) * temperature ** 2  # 0.1308 x T^2
    assert float(distillation_loss(student, teacher, temperature)) == pytest.approx(expected, rel=1e-6)
    assert float(distillation_loss(teacher, teacher, temperature)) == pytest.approx(0.0, abs=1e-6)


def test_binary_distillation_loss_is_the_per_class_kl_by_hand():
    # one class: teacher logit 0 -> p = 1/2; student logit ln 3 -> q = 3/4
    teacher, student = torch.zeros(1, 1), torch.tensor([[math.log(3.0)]])
    expected = 0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(0.5 / 0.25)  # 0.1438
    assert float(binary_distillation_loss(student, teacher, 1.0)) == pytest.approx(expected, rel=1e-6)


# ------------------------------------------------------------------------------------------ views
def test_dual_adapter_views_by_hand():
    # Prepare: d = 2, r = 1; each adapter's delta(h) = w_up * relu(w_down . h)
    adapter = DualAdapter(2, 1)
    with torch.no_grad():
        for part, (down, up) in {"shared": (1.0, 2.0), "personal": (1.0, 4.0), "anchor": (1.0, 8.0)}.items():
            module = getattr(adapter, part)
            module.down.weight.fill_(down)
            module.down.bias.zero_()
            module.up.weight.fill_(up)
            module.up.bias.zero_()
    hidden = torch.tensor([[1.0, 2.0]])  # w_down . h = 3
    # Execute / Assert: student h + 2*3; teacher h + (4*3 + 8*3) / 2
    assert torch.equal(adapter(hidden), torch.tensor([[7.0, 8.0]]))
    adapter.teacher = True
    assert torch.equal(adapter(hidden), torch.tensor([[19.0, 20.0]]))
    assert not any(param.requires_grad for param in adapter.anchor.parameters())


# ------------------------------------------------------------------------------------------ local step
def _model_and_shard(seed: int = 0):
    model = build_vqa_model("vilt", "scratch", answers=ANSWERS, unit_mode="dual_adapter", seed=seed)
    images, questions, answers = synthetic_examples(8)
    return model, encode_examples(model, images, questions, answers)


def _train(model, shard, state, seed=3):
    model.set_trainable([True] * len(model.units))
    settings = LocalSettings(epochs=1, batch_size=4, lr=1e-2)
    return FedDatObjective().train(model, shard, state, settings=settings, generator=torch.Generator().manual_seed(seed))


def test_feddat_trains_shared_and_personal_keeps_them_apart_and_is_deterministic():
    model, shard = _model_and_shard()
    assert build_local_objective("feddat").keeps_client_state and not build_local_objective("supervised").keeps_client_state
    units = model.unit_parameter_names()
    personal = model.client_state_names()
    assert personal and not set(personal) & {name for names in units.values() for name in names}
    shared_before = model.trainable_state(include_head=False)
    start = model.client_state()

    result = _train(model, shard, start)

    assert math.isfinite(result.loss) and set(result.client_state) == set(personal)
    assert any(not torch.equal(result.client_state[n], start[n]) for n in personal)  # the personal adapter trained
    shared_after = model.trainable_state(include_head=False)
    assert any(not torch.equal(shared_after[n], shared_before[n]) for n in shared_after)  # so did the shared one
    params = dict(model.named_parameters())
    for key, adapter in model.bottleneck.items():  # the anchor is the shared adapter as received, frozen
        for name, tensor in adapter.anchor.named_parameters():
            assert torch.equal(tensor, shared_before[f"bottleneck.{key}.shared.{name}"])
    assert not any(params[n].requires_grad for n in personal)  # left as found
    assert all(not adapter.teacher for adapter in model.bottleneck.values())

    # Same inputs, same seed -> the same result (from a fresh model)
    again, shard_again = _model_and_shard()
    repeat = _train(again, shard_again, start)
    assert repeat.loss == result.loss
    assert all(torch.equal(repeat.client_state[n], result.client_state[n]) for n in personal)


def test_personal_evaluation_uses_the_clients_own_adapters():
    model, shard = _model_and_shard()
    trained = _train(model, shard, model.client_state()).client_state
    objective = FedDatObjective()
    own = objective.evaluate_personal(model, shard, trained, batch_size=8, precision="fp32")
    fresh = objective.evaluate_personal(model, shard, {n: torch.zeros_like(t) for n, t in trained.items()},
                                        batch_size=8, precision="fp32")
    assert own.n == fresh.n == len(shard) and own.loss != fresh.loss
    assert all(not adapter.teacher for adapter in model.bottleneck.values())  # back to the student view
    # the global evaluation is untouched by whichever personal state was loaded last
    from f3ocus.models.training import evaluate

    set_teacher_view(model.bottleneck, False)
    first = evaluate(model, shard, batch_size=8)
    model.load_client_state(trained)
    copy_shared_to_anchor(model.bottleneck)
    assert evaluate(model, shard, batch_size=8).loss == first.loss


def test_a_state_of_another_shape_is_refused():
    model, _ = _model_and_shard()
    state = model.client_state()
    with pytest.raises(KeyError, match="missing"):
        model.load_client_state(dict(list(state.items())[1:]))
    name = next(iter(state))
    with pytest.raises(ValueError, match="shape"):
        model.load_client_state({**state, name: torch.zeros(1)})
