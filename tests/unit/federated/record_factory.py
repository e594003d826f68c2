"""A full `RoundRecord` for tests of what reads one (progress line, metric mappings, sweep reports)."""

from typing import Any

from f3ocus.federated.records import RoundRecord


def make_record(**fields: Any) -> RoundRecord:
    """A round-1 record with plain values (no clients, nothing failed, no selection); `fields` override them."""
    defaults: dict[str, Any] = dict(round=1, accuracy=0.5, loss=1.0, score=0.5, per_client={}, train_loss=None,
                                    bytes_up=0, bytes_down=0, bytes_up_per_client={}, seconds=1.0, phase_seconds={},
                                    worker_seconds={}, failed_clients=[], selected=None, selection=None)
    return RoundRecord(**{**defaults, **fields})
