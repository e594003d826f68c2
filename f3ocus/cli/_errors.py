"""Exit codes, and the errors the `f3ocus` command prints as one line instead of a traceback.

The error classes are imported only when an error is being matched: their modules import torch or `datasets`,
which `f3ocus solve` must not pay for at start-up.
"""

from __future__ import annotations

EXIT_USAGE = 2
EXIT_STOPPED = 1  # the run stopped on purpose (too few clients); its last checkpoint can be resumed


def one_line(error: BaseException) -> str:
    """The message on one line (a library's multi-line message is joined with " | ")."""
    return " | ".join(line.strip() for line in str(error).splitlines() if line.strip())


def run_stops() -> tuple[type[BaseException], ...]:
    from f3ocus.federated.state import TooFewClientsError

    return (TooFewClientsError,)


def checkpoint_errors() -> tuple[type[BaseException], ...]:
    from f3ocus.federated.checkpoint import CheckpointError

    return (CheckpointError,)


def user_errors() -> tuple[type[BaseException], ...]:
    from f3ocus.data.schema import DataError

    return (DataError,)
