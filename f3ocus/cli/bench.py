"""`f3ocus bench paper` and `f3ocus bench study`: the paper's comparison grid and the study's protocol.

    f3ocus bench paper [--quick] [--seeds K] [--tasks t1,t4] [--methods f3ocus,snip] [--models vilt,blip]
                       [--jobs 2] [--engine local|ray] [--output-dir runs] [--set key=value ...]
    f3ocus bench study [--choose] [--seeds K] [--methods a,b] [--tasks t1] [--models vilt12] [--jobs 2]
                       [--figures-dir docs/study]

The grids themselves are `f3ocus.benchmarks.paper.run_paper_bench` and `f3ocus.benchmarks.study.run_study`,
their cells Ray Tune trials (`f3ocus.benchmarks.tune_grid`; Ray joined at $RAY_ADDRESS, else started here);
both exit 0 when every cell ran, 1 when some cell failed (the same command resumes), 2 for a bad flag or cell
config.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from f3ocus.benchmarks.grid import TASKS_DIR
from f3ocus.benchmarks.methods import METHODS
from f3ocus.benchmarks.paper import EXPERIMENT, run_paper_bench
from f3ocus.benchmarks.study import SETTINGS, STUDY_METHODS, Setting, run_study
from f3ocus.config.schema import ConfigError


def add_parsers(commands: Any) -> None:
    """Add `bench` (with `paper` and `study`) to the `f3ocus` subcommands."""
    bench = commands.add_parser("bench", help="benchmarks that reproduce the paper's tables")
    kinds = bench.add_subparsers(dest="bench", required=True)
    paper = kinds.add_parser("paper", help="methods x tasks x tiny models offline; Tables A and B (resumable)")
    paper.add_argument("--quick", action="store_true", help="the <= 20 min grid (profile 'quick'); default 'full'")
    paper.add_argument("--seeds", type=int, help="seeds 0..K-1 (default: the profile's)")
    paper.add_argument("--tasks", type=_names, help="comma-separated task keys, e.g. t1,t4 (configs/tasks/)")
    paper.add_argument("--methods", type=_names, help=f"comma-separated; known: {', '.join(METHODS)}")
    paper.add_argument("--models", type=_names, help="comma-separated model families, e.g. vilt,blip")
    paper.add_argument("--jobs", type=int, default=1, help="cells run at once, one Ray Tune trial each (default 1)")
    paper.add_argument("--engine", choices=("local", "ray"), default="local", help="federation.engine of every cell")
    paper.add_argument("--output-dir", default="runs", help="MLflow store and bench/ folder root (default runs)")
    paper.add_argument("--tracking-uri", help="default: $MLFLOW_TRACKING_URI, else sqlite:///<output-dir>/mlflow.db")
    paper.add_argument("--experiment", default=EXPERIMENT, help=f"MLflow experiment (default {EXPERIMENT})")
    paper.add_argument("--tasks-dir", type=Path, default=TASKS_DIR, help="where t<k>_<name>.yaml task configs are "
                       "(default: the repository's configs/tasks)")
    paper.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="override a config key in every cell, e.g. --set federation.local_epochs=2")
    paper.set_defaults(handler=_bench_paper)
    _add_study_parser(kinds)


def _add_study_parser(kinds: Any) -> None:
    study = kinds.add_parser("study", help="the protocol of docs/STUDY.md: deep presets, scarce coverage, paired "
                                           "statistics (resumable)")
    study.add_argument("--choose", action="store_true", help="step 1: score the schedule candidates with full "
                       "fine-tuning on validation rows and print the rule's pick")
    study.add_argument("--seeds", type=int, help="seeds 0..K-1 for every row (default: each row's own, see SEEDS)")
    study.add_argument("--methods", type=_names, help=f"comma-separated; known: {', '.join(STUDY_METHODS)}")
    study.add_argument("--tasks", type=_names, help="comma-separated task keys of the study to run (default: all, "
                       + ", ".join(dict.fromkeys(s.task for s in SETTINGS)) + ")")
    study.add_argument("--models", type=_names, help="comma-separated models of the study to run (default: all, "
                       + ", ".join(dict.fromkeys(s.model for s in SETTINGS)) + ")")
    study.add_argument("--jobs", type=int, default=1, help="cells run at once, one Ray Tune trial each (default 1)")
    study.add_argument("--output-dir", default="runs", help="MLflow store and bench/ folder root (default runs)")
    study.add_argument("--tracking-uri", help="default: $MLFLOW_TRACKING_URI, else sqlite:///<output-dir>/mlflow.db")
    study.add_argument("--figures-dir", type=Path, help="also write the PNG figures and study.md here")
    study.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                       help="override a config key in every cell (changes what the protocol fixed: say so)")
    study.set_defaults(handler=_bench_study)


def _names(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


def _check_counts(args: argparse.Namespace) -> None:
    if args.seeds is not None and args.seeds < 1:
        raise ConfigError("--seeds", f"must be >= 1, got {args.seeds}")
    if args.jobs < 1:
        raise ConfigError("--jobs", f"must be >= 1, got {args.jobs}")


def _bench_paper(args: argparse.Namespace) -> int:
    _check_counts(args)
    return _resumable(lambda: run_paper_bench(
        profile="quick" if args.quick else "full", tasks=args.tasks, methods=args.methods, models=args.models,
        seeds=args.seeds, jobs=args.jobs, engine=args.engine, output_dir=Path(args.output_dir),
        tracking_uri=args.tracking_uri, experiment=args.experiment, overrides=tuple(args.overrides),
        tasks_dir=args.tasks_dir))


def _bench_study(args: argparse.Namespace) -> int:
    _check_counts(args)
    settings = _narrow(_narrow(SETTINGS, "task", args.tasks), "model", args.models)
    return _resumable(lambda: run_study(
        choose=args.choose, seeds=args.seeds, methods=args.methods, jobs=args.jobs, settings=settings,
        output_dir=Path(args.output_dir), tracking_uri=args.tracking_uri, figures_dir=args.figures_dir,
        overrides=tuple(args.overrides)))


def _resumable(run: Callable[[], dict[str, Any]]) -> int:
    """Run a grid: 0 when every cell is ok, 1 when some failed, 130 on Ctrl-C (one line, no traceback: the
    finished cells are on disk and the same command resumes)."""
    try:
        summary = run()
    except KeyboardInterrupt as stop:
        print(f"\n{stop or 'interrupted'}", file=sys.stderr)
        return 130
    return 0 if not summary["failed"] else 1


def _narrow(settings: Sequence[Setting], field: str, names: Sequence[str] | None) -> tuple[Setting, ...]:
    """The settings whose `field` ("task" or "model") is one of `names` (all when None).

    Raises:
        ConfigError: a name no study setting has (field `--tasks` / `--models`).
    """
    if not names:
        return tuple(settings)
    known = sorted({getattr(setting, field) for setting in SETTINGS})
    unknown = sorted(set(names) - set(known))
    if unknown:
        raise ConfigError(f"--{field}s", f"unknown study {field}(s) {unknown}; known: {known}")
    return tuple(setting for setting in settings if getattr(setting, field) in names)
