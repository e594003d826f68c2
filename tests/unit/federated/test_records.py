"""The typed round record: built once, frozen, the same JSON as the dicts it replaced, readable from old
checkpoints; the `log` phase reaches the history after the round's own checkpoint."""

import dataclasses
import json
import pickle

import pytest

from f3ocus.federated.records import RoundRecord
from f3ocus.federated.state import CHECKPOINT, FederationState
from tests.unit.federated.record_factory import make_record
from tests.unit.federated.test_coordinator import FakePool, _coordinator

# The JSON key order of result.json's history and the checkpoint's (as the dict literal had it).
ROUND_0_KEYS = ["round", "accuracy", "loss", "score", "per_client", "train_loss", "bytes_up", "bytes_down",
                "bytes_up_per_client", "state_bytes", "state_bytes_up_per_client", "seconds", "phase_seconds",
                "worker_seconds", "failed_clients", "selected", "selection"]
FAULT_KEYS = ["failure_reasons", "retries", "retry_reasons", "actors_replaced"]


def test_records_keep_their_json_keys_in_order_and_round_trip(tmp_path):
    coordinator = _coordinator(tmp_path, FakePool(fail_train={"c2"}))
    initial, first = coordinator.evaluate_initial(), coordinator.run_round(1)
    assert list(initial.to_dict()) == ROUND_0_KEYS  # no fault details before training
    assert list(first.to_dict()) == ROUND_0_KEYS + FAULT_KEYS
    assert first.failure_reasons == {"c2": "train: RuntimeError: boom"} and first.actors_replaced == 0
    assert coordinator.state.history == [initial.to_dict(), first.to_dict()]
    for record in (initial, first):
        plain = json.loads(json.dumps(record.to_dict()))
        assert RoundRecord.from_dict(plain).to_dict() == plain
        assert pickle.loads(pickle.dumps(record)) == record  # a coordinator actor returns it to the driver
    with pytest.raises(dataclasses.FrozenInstanceError):
        first.accuracy = 1.0


def test_the_log_phase_reaches_the_history_after_the_rounds_own_checkpoint(tmp_path):
    coordinator = _coordinator(tmp_path, FakePool())
    coordinator.evaluate_initial()
    record = coordinator.run_round(1)
    assert list(record.phase_seconds)[-1] == "log"
    saved = FederationState.load(tmp_path / CHECKPOINT).history
    assert "log" not in saved[1]["phase_seconds"] and "log" in saved[0]["phase_seconds"]
    assert coordinator.state.history[1] == record.to_dict()


def test_a_record_from_an_older_checkpoint_reads_with_defaults_and_unknown_keys_are_refused():
    plain = make_record().to_dict()
    for key in ("state_bytes", "state_bytes_up_per_client"):  # written before client state was counted
        del plain[key]
    record = RoundRecord.from_dict(plain)
    assert record.state_bytes == 0 and record.state_bytes_up_per_client == {} and record.auroc_macro is None
    with pytest.raises(TypeError):
        RoundRecord.from_dict({**plain, "surprise": 1})
    with pytest.raises(TypeError):
        RoundRecord.from_dict({key: value for key, value in plain.items() if key != "accuracy"})
