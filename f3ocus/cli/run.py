"""`f3ocus run`, `f3ocus validate`, `f3ocus pretrain` and `f3ocus units`: one experiment, its config, its model.

`run` and `validate` take an experiment YAML, `--method` (one of the paper's methods by name, applied before
`--set`) and `--set key=value` overrides; `run --resume RUN_DIR` continues a run from its last completed round.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from f3ocus.config.load import load_config
from f3ocus.config.schema import UNIT_MODES, ConfigError


def add_parsers(commands: Any) -> None:
    """Add `run`, `validate`, `pretrain` and `units` to the `f3ocus` subcommands."""
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


def _tiny_family(name: str) -> str:
    from f3ocus.models.registry import FAMILIES

    family = name.removeprefix("tiny-")
    if family not in FAMILIES:
        raise ConfigError("--model", f"unknown model {name!r}; known: {', '.join('tiny-' + f for f in FAMILIES)}")
    return family
