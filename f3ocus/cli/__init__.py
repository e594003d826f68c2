"""The `f3ocus` command: run, validate, pretrain, units, solve, mlflow-replay, report, sweep, mlflow-server, bench.

It owns the argument parsing of every command, one module per command group: `run` (run, validate, pretrain,
units), `report` (mlflow-replay, report), `solve`, `sweep` (sweep, mlflow-server) and `bench` (bench paper,
bench study). Each handler turns its arguments into a call of a library function; the libraries take no
`argparse` objects.

User errors (an invalid config: `ConfigError`; bad data: `f3ocus.data.schema.DataError`; an unusable
checkpoint on `--resume`: `CheckpointError`) print one line, `config error: <field>: ...`, `data error: <file
or row>: ...` or `checkpoint error: <file>: ...`, and exit with code 2, never a traceback; all surface before
Ray starts (validation, the checkpoint and its agreement with the config, then data preparation on the
driver). Anything else is a bug and propagates.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from f3ocus.cli import bench, report, run, solve, sweep
from f3ocus.cli._errors import EXIT_STOPPED, EXIT_USAGE, checkpoint_errors, one_line, run_stops, user_errors
from f3ocus.config.schema import ConfigError

__all__ = ["EXIT_STOPPED", "EXIT_USAGE", "main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Parse `argv` (default: `sys.argv[1:]`), run the command's handler, return the exit code."""
    for stream in (sys.stdout, sys.stderr):  # a name with undecodable argv bytes must not crash a print
        try:
            stream.reconfigure(errors="backslashreplace")
        except (AttributeError, ValueError, OSError):  # not a TextIOWrapper (a test's capture, a redirect)
            pass
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except ConfigError as error:
        print(f"config error: {one_line(error)}", file=sys.stderr)
        return EXIT_USAGE
    except checkpoint_errors() as error:
        print(f"checkpoint error: {one_line(error)}", file=sys.stderr)
        return EXIT_USAGE
    except user_errors() as error:
        print(f"data error: {one_line(error)}", file=sys.stderr)
        return EXIT_USAGE
    except run_stops() as error:
        print(f"run stopped: {error}", file=sys.stderr)
        return EXIT_STOPPED


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="f3ocus", description="Federated VLM fine-tuning with F3OCUS on Ray.")
    commands = parser.add_subparsers(dest="command", required=True)
    run.add_parsers(commands)  # run, validate, pretrain, units
    report.add_parsers(commands)  # mlflow-replay, report
    solve.add_parsers(commands)  # solve
    sweep.add_parsers(commands)  # sweep, mlflow-server
    bench.add_parsers(commands)  # bench paper, bench study
    return parser
