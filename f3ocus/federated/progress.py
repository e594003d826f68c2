"""Human-readable progress: one live line while a round runs, one summary line per round."""

from __future__ import annotations

import time

from f3ocus.federated.records import RoundRecord
from f3ocus.federated.state import Progress


def format_progress(progress: Progress) -> str:
    """`round 2/5 | train 3/4 clients | ETA 0:41`."""
    return (f"round {progress.round_idx}/{progress.rounds} | {progress.phase} {progress.done}/{progress.total} "
            f"clients | ETA {_eta(progress)}")


def format_round(record: RoundRecord, progress: Progress) -> str:
    train = "" if record.train_loss is None else f" train_loss {record.train_loss:.3f}"
    failed = f" failed {record.failed_clients}" if record.failed_clients else ""
    if record.retries:
        failed += f" retried {record.retries}"
    # Runs with multi-label clients (docs/METHOD.md §5 T4-T6) also show their F1 and the unified score.
    f1 = f" f1 {record.f1:.3f} score {record.score:.3f}" if record.f1 is not None else ""
    return (f"round {record.round}/{progress.rounds}: acc {record.accuracy:.3f}{f1} loss {record.loss:.3f}"
            f"{train} up {record.bytes_up / 1e6:.2f} MB {record.seconds:.1f}s ETA {_eta(progress)}{failed}")


def _eta(progress: Progress) -> str:
    if not progress.round_seconds:
        return "?"
    remaining = progress.rounds - len(progress.round_seconds)
    seconds = int(remaining * sum(progress.round_seconds) / len(progress.round_seconds))
    return time.strftime("%M:%S", time.gmtime(seconds)) if seconds < 3600 else f"{seconds // 3600}h"
