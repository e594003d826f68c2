"""Metric names (`phase/name`, step = round_idx; round 0 is the evaluation before any training)."""

EVAL_ACC = "eval/acc"
EVAL_LOSS = "eval/loss"
TRAIN_LOSS = "train/loss"
COMM_BYTES_UP = "comm/bytes_up"
COMM_BYTES_DOWN = "comm/bytes_down"
ROUND_SECONDS = "round/seconds"
SELECT_DISTINCT_UNITS = "select/distinct_units"
FED_FAILED = "fed/failed_clients"


def client_metric(client: str, name: str) -> str:
    """Per-client metric, e.g. `client/pathmnist/acc`."""
    return f"client/{client}/{name}"
