"""`f3ocus mlflow-replay` and `f3ocus report`: after a run, its buffered MLflow records and the HTML dashboard."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from f3ocus.cli._errors import one_line
from f3ocus.config.schema import ConfigError


def add_parsers(commands: Any) -> None:
    """Add `mlflow-replay` and `report` to the `f3ocus` subcommands."""
    replay = commands.add_parser("mlflow-replay", help="send the MLflow records a run buffered while MLflow was down "
                                 "(creating its run if MLflow was down when it started)")
    replay.add_argument("buffer", help="the run's mlflow_buffer.jsonl")
    replay.add_argument("--tracking-uri", help="default: the URI stored with each record")
    replay.set_defaults(handler=_mlflow_replay)

    report = commands.add_parser("report", help="write a self-contained HTML dashboard of an MLflow experiment")
    report.add_argument("--experiment", required=True, help="MLflow experiment name (tracking.experiment)")
    report.add_argument("--tracking-uri", help="default: $MLFLOW_TRACKING_URI, else sqlite:///$PWD/runs/mlflow.db")
    report.add_argument("--out", help="HTML file to write (default: runs/report-<experiment>.html)")
    report.set_defaults(handler=_report)


def _mlflow_replay(args: argparse.Namespace) -> int:
    from f3ocus.tracking.mlflow_logger import replay_buffer

    if not Path(args.buffer).is_file():
        raise ConfigError("buffer", f"no such file: {args.buffer}")
    try:
        sent = replay_buffer(args.buffer, args.tracking_uri)
    except Exception as error:  # noqa: BLE001 - MLflow still down: say so, keep the rest of the buffer
        print(f"mlflow error: {one_line(error)} (unsent records stay in {args.buffer})", file=sys.stderr)
        return 1
    print(f"sent {sent} buffered record(s) to MLflow")
    return 0


def _report(args: argparse.Namespace) -> int:
    from f3ocus.dashboard import write_report

    path, data = write_report(args.experiment, args.tracking_uri, args.out)
    print(f"wrote {path} ({len(data['runs'])} runs, {len(data['table']['cells'])} method x task cells, "
          f"{len(data['sweeps'])} sweep(s))")
    return 0
