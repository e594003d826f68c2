"""The `f3ocus` command: run, validate, pretrain, units, solve, mlflow-replay, report, sweep, mlflow-server, bench.

User errors (an invalid config: `ConfigError`; bad data: `f3ocus.data.schema.DataError`; an unusable
checkpoint on `--resume`: `CheckpointError`) print one line, `config error: <field>: ...`, `data error: <file
or row>: ...` or `checkpoint error: <file>: ...`, and exit with code 2, never a traceback; all surface before
Ray starts (validation, the checkpoint and its agreement with the config, then data preparation on the
driver). Anything else is a bug and propagates.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, Sequence

from f3ocus.config.load import load_config
from f3ocus.config.schema import UNIT_MODES, ConfigError
from f3ocus.benchmarks.paper import add_bench_parser
from f3ocus.selection.solve_cli import add_solve_parser
from f3ocus.sweeps.cli import add_sweep_parsers

EXIT_USAGE = 2
EXIT_STOPPED = 1  # the run stopped on purpose (too few clients); its last checkpoint can be resumed


def main(argv: Sequence[str] | None = None) -> int:
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
        print(f"config error: {_one_line(error)}", file=sys.stderr)
        return EXIT_USAGE
    except _checkpoint_errors() as error:
        print(f"checkpoint error: {_one_line(error)}", file=sys.stderr)
        return EXIT_USAGE
    except _user_errors() as error:
        print(f"data error: {_one_line(error)}", file=sys.stderr)
        return EXIT_USAGE
    except _run_stops() as error:
        print(f"run stopped: {error}", file=sys.stderr)
        return EXIT_STOPPED


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="f3ocus", description="Federated VLM fine-tuning with F3OCUS on Ray.")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run one federated experiment")
    run.add_argument("config", nargs="?", help="experiment YAML, e.g. configs/experiments/quickstart.yaml "
                     "(optional with --resume: the run's own config.yaml is used)")
    run.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                     help="override a config key (dotted), repeatable: --set federation.rounds=3")
    run.add_argument("--method", help="one of the paper's methods by name (f3ocus, snip, lora_all, ...: "
                     "f3ocus/benchmarks/methods.py), applied before --set")
    run.add_argument("--output-json", help="also write the result JSON here")
    run.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its last completed round, "
                     "into the same MLflow run (the config may change only the keys README lists)")
    run.set_defaults(handler=_run)

    check = commands.add_parser("validate", help="check a config without running it")
    check.add_argument("config")
    check.add_argument("--method", help="one of the paper's methods by name, applied before --set")
    check.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    check.set_defaults(handler=_validate)

    pretrain = commands.add_parser("pretrain", help="build the cached foundation checkpoint of a tiny VLM")
    pretrain.add_argument("--model", required=True, help="tiny-llava | tiny-blip2 | tiny-blip | tiny-vilt")
    pretrain.add_argument("--cache-dir", help="cache root (default: user cache dir or $F3OCUS_CACHE_DIR)")
    pretrain.add_argument("--force", action="store_true", help="rebuild even if cached")
    pretrain.add_argument("--corpus", choices=("general", "medical"), default="general",
                          help="general = easy-vqa with background scenes (checkpoint 'foundation'); medical = plus "
                               "medical-style VQA on MedMNIST modalities no T2 client holds ('foundation-med')")
    pretrain.set_defaults(handler=_pretrain)

    units = commands.add_parser("units", help="list a model's selectable units and their sizes")
    units.add_argument("--model", required=True, help="tiny-<family>, or FAMILY:CHECKPOINT (hub id / local dir)")
    units.add_argument("--unit-mode", choices=UNIT_MODES, default="layer")
    units.set_defaults(handler=_units)

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

    add_solve_parser(commands)
    add_sweep_parsers(commands)  # sweep, mlflow-server (f3ocus/sweeps/cli.py)
    add_bench_parser(commands)  # bench paper (f3ocus/benchmarks/paper.py)
    return parser


def _run(args: argparse.Namespace) -> int:
    from f3ocus.experiment import run_experiment
    from f3ocus.report import print_summary

    if args.config is None and args.resume is None:
        raise ConfigError("config", "give a config file, or --resume RUN_DIR")
    config_path = args.config or Path(args.resume) / "config.yaml"
    cfg = load_config(config_path, _method_overrides(args.method) + list(args.overrides))
    result = run_experiment(cfg, output_json=args.output_json, resume_dir=args.resume)
    print_summary(result)
    return 0


def _method_overrides(name: str | None) -> list[str]:
    """`key=value` overrides of a named paper method (`--method`), e.g. snip -> top_k selector + snip scorer."""
    if name is None:
        return []
    from f3ocus.benchmarks.methods import METHODS

    if name not in METHODS:
        raise ConfigError("--method", f"unknown method {name!r}; known: {', '.join(METHODS)}")
    return [f"{key}={value}" for key, value in METHODS[name].overrides.items()]


def _validate(args: argparse.Namespace) -> int:
    from f3ocus.config.validate import validate

    cfg = load_config(args.config, _method_overrides(args.method) + list(args.overrides))
    units = validate(cfg)
    print(f"ok: {cfg.name}: {cfg.model.family} ({len(units)} units, {cfg.model.unit_mode} mode), task "
          f"{cfg.data.task}, selection {cfg.selection.method} (scorer {cfg.selection.scorer}), "
          f"{cfg.federation.rounds} rounds")
    return 0


def _pretrain(args: argparse.Namespace) -> int:
    from f3ocus.models.foundation import ensure_foundation, foundation_dir

    family = _tiny_family(args.model)
    if args.force:
        import shutil
        shutil.rmtree(foundation_dir(family, args.cache_dir, corpus=args.corpus), ignore_errors=True)
    path = ensure_foundation(family, args.cache_dir, corpus=args.corpus)
    info = json.loads((Path(path) / "foundation.json").read_text())
    print(json.dumps({"path": str(path), **info}, indent=2))
    return 0


def _units(args: argparse.Namespace) -> int:
    from f3ocus.models.registry import build_vqa_model

    family, _, checkpoint = args.model.partition(":")
    family = _tiny_family(family) if family.startswith("tiny-") else family
    model = build_vqa_model(family, checkpoint or "scratch", answers=["yes", "no"], unit_mode=args.unit_mode)
    sizes = model.num_unit_parameters()
    for unit in model.units:
        print(f"{unit:16s} {sizes[unit]:>12,d}")
    print(f"{'head':16s} {sizes.get('head', 0):>12,d}")
    return 0


def _mlflow_replay(args: argparse.Namespace) -> int:
    from f3ocus.tracking.mlflow_logger import replay_buffer

    if not Path(args.buffer).is_file():
        raise ConfigError("buffer", f"no such file: {args.buffer}")
    try:
        sent = replay_buffer(args.buffer, args.tracking_uri)
    except Exception as error:  # noqa: BLE001 - MLflow still down: say so, keep the rest of the buffer
        print(f"mlflow error: {_one_line(error)} (unsent records stay in {args.buffer})", file=sys.stderr)
        return 1
    print(f"sent {sent} buffered record(s) to MLflow")
    return 0


def _report(args: argparse.Namespace) -> int:
    from f3ocus.dashboard import write_report

    path, data = write_report(args.experiment, args.tracking_uri, args.out)
    print(f"wrote {path} ({len(data['runs'])} runs, {len(data['table']['cells'])} method x task cells, "
          f"{len(data['sweeps'])} sweep(s))")
    return 0


def _tiny_family(name: str) -> str:
    from f3ocus.models.registry import FAMILIES

    family = name.removeprefix("tiny-")
    if family not in FAMILIES:
        raise ConfigError("--model", f"unknown model {name!r}; known: {', '.join('tiny-' + f for f in FAMILIES)}")
    return family


def _run_stops() -> tuple[type[BaseException], ...]:
    from f3ocus.federated.state import TooFewClientsError

    return (TooFewClientsError,)


def _one_line(error: BaseException) -> str:
    """The message on one line (a library's multi-line message is joined with " | ")."""
    return " | ".join(line.strip() for line in str(error).splitlines() if line.strip())


def _checkpoint_errors() -> tuple[type[BaseException], ...]:
    from f3ocus.federated.checkpoint import CheckpointError

    return (CheckpointError,)


def _user_errors() -> tuple[type[BaseException], ...]:
    from f3ocus.data.schema import DataError

    return (DataError,)


if __name__ == "__main__":
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    sys.exit(main())
