"""What every `ray_jobs/` entrypoint does first: put the shipped working dir on sys.path, set the offline
defaults, then hand its argv to one `f3ocus` subcommand (`--smoke-test` fills in a bundled config)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
OFFLINE_DEFAULTS = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "RAY_AUTH_MODE": "disabled"}


def job_argv(command: str, smoke_config: str, args: list[str]) -> list[str]:
    """`[command, *args]`; `--smoke-test` is dropped and, when no config path is given, `smoke_config` used."""
    if "--smoke-test" in args:
        args = [a for a in args if a != "--smoke-test"]
        if not args or args[0].startswith("-"):
            args = [str(REPO / smoke_config), *args]
    return [command, *args]


def run_job(command: str, smoke_config: str) -> int:
    """Run `f3ocus <command> ...` with this process's argv; returns the CLI's exit code."""
    sys.path.insert(0, str(REPO))  # the working dir shipped by `ray job submit` holds the f3ocus package
    for key, value in OFFLINE_DEFAULTS.items():
        os.environ.setdefault(key, value)
    from f3ocus.cli import main

    return main(job_argv(command, smoke_config, sys.argv[1:]))
