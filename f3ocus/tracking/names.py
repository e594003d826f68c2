"""Metric names (`phase/name`, step = round_idx; round 0 is the evaluation before any training)."""

EVAL_ACC = "eval/acc"  # mean accuracy of the VQA clients (no VQA client: multi-label subset accuracy)
EVAL_LOSS = "eval/loss"
EVAL_SCORE = "eval/score"  # mean over clients of accuracy (VQA) or micro-F1 (multi-label): the benchmark number
EVAL_F1 = "eval/f1"  # mean micro-F1 of the multi-label clients (only when there is one)
EVAL_F1_MACRO = "eval/f1_macro"  # mean macro-F1 of the multi-label clients
EVAL_AUROC_MACRO = "eval/auroc_macro"  # mean macro-AUROC of the multi-label clients (threshold-free)
EVAL_SUBSET_ACC = "eval/subset_acc"  # mean subset (exact set) accuracy of the multi-label clients
TRAIN_LOSS = "train/loss"
COMM_BYTES_UP = "comm/bytes_up"
COMM_BYTES_DOWN = "comm/bytes_down"
COMM_STATE_BYTES = "comm/state_bytes"  # client state sent with tasks + returned with updates (apart from the upload)
EVAL_PERSONAL_ACC = "eval/personal_acc"  # mean accuracy with each client's own state (methods with client state)
EVAL_PERSONAL_SCORE = "eval/personal_score"  # mean score (accuracy / micro-F1) with each client's own state
ROUND_SECONDS = "round/seconds"
SELECT_DISTINCT_UNITS = "select/distinct_units"
SELECT_IMPORTANCE = "select/importance"  # objective 1 of the chosen masks, on row-normalised scores
SELECT_VARIANCE = "select/variance"  # objective 2: population variance of the selection histogram
SELECT_FRONT_SIZE = "select/front_size"  # Pareto-front points (multi-objective selectors only)
SELECT_SOLVER_SECONDS = "select/solver_seconds"  # wall time of the selector's decision
FED_FAILED = "fed/failed_clients"
DATA_SKIPPED_ROWS = "data/skipped_rows"  # rows dropped under data.on_bad_row: skip (step 0; /<reason> per reason)
# The round metrics every trial reports to Tune (the names a sweep's `metric` may use; the values are those
# MLflow gets, `f3ocus.federated.records.scheduler_metrics`). Kept here, not in records.py, because the
# sweep's schema reads it without importing torch.
SCHEDULER_METRICS = (EVAL_ACC, EVAL_LOSS, COMM_BYTES_UP, COMM_BYTES_DOWN, ROUND_SECONDS, FED_FAILED, TRAIN_LOSS,
                     EVAL_SCORE)


def time_metric(phase: str) -> str:
    """Wall seconds of one phase of a round (score, select, train, aggregate, evaluate), e.g. `time/train`.

    `train` includes folding each upload into the running average as it arrives; `aggregate` is the rest.
    """
    return f"time/{phase}"


def client_metric(client: str, name: str) -> str:
    """Per-client metric, e.g. `client/pathmnist/acc`."""
    return f"client/{client}/{name}"
