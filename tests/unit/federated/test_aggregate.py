"""Masked FedAvg against hand-computed values."""

import pytest
import torch

from f3ocus.federated.aggregate import masked_fedavg


def test_each_unit_is_averaged_over_the_clients_that_trained_it():
    # Prepare: three tensors; client A (10 examples) trains a and b, client B (30 examples) trains b only.
    global_state = {"a": torch.tensor([1.0, 1.0]), "b": torch.tensor([0.0]), "c": torch.tensor([5.0])}
    updates = [(10, {"a": torch.tensor([3.0, 5.0]), "b": torch.tensor([4.0])}),
               (30, {"b": torch.tensor([8.0])})]
    # Execute
    result = masked_fedavg(global_state, updates)
    # Assert: a only from A; b = (10*4 + 30*8) / 40 = 7; c untouched by anyone keeps its value.
    assert torch.equal(result["a"], torch.tensor([3.0, 5.0]))
    assert torch.allclose(result["b"], torch.tensor([7.0]))
    assert torch.equal(result["c"], torch.tensor([5.0]))


def test_inputs_are_not_mutated_and_dtype_is_kept():
    global_state = {"w": torch.tensor([1.0, 2.0], dtype=torch.float32)}
    update = {"w": torch.tensor([3.0, 4.0])}
    result = masked_fedavg(global_state, [(1, update), (3, {"w": torch.tensor([1.0, 0.0])})])
    assert torch.allclose(result["w"], torch.tensor([1.5, 1.0]))  # (3+3)/4, (4+0)/4
    assert result["w"].dtype == torch.float32
    assert torch.equal(global_state["w"], torch.tensor([1.0, 2.0]))
    assert result["w"] is not global_state["w"]


def test_unknown_tensor_shape_mismatch_and_bad_counts_are_rejected():
    global_state = {"w": torch.zeros(2)}
    with pytest.raises(KeyError):
        masked_fedavg(global_state, [(1, {"v": torch.zeros(2)})])
    with pytest.raises(ValueError, match="shape"):
        masked_fedavg(global_state, [(1, {"w": torch.zeros(3)})])
    with pytest.raises(ValueError, match="num_examples"):
        masked_fedavg(global_state, [(0, {"w": torch.zeros(2)})])


def test_no_updates_keeps_everything():
    global_state = {"w": torch.arange(3.0)}
    assert torch.equal(masked_fedavg(global_state, [])["w"], torch.arange(3.0))
