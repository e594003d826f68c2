"""The typed experiment schema: one frozen dataclass per YAML section, defaults live here and only here.

`f3ocus.config.load` merges a YAML file and `--set a.b=c` overrides onto these classes; anything the
classes do not declare is an error naming the field. Checks that need only the section itself live in
`__post_init__`; checks across sections (a budget against the model's unit count, a data path on
disk) live in `f3ocus.config.validate`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


class ConfigError(ValueError):
    """An invalid experiment configuration; `field` is the dotted path of the offending key."""

    def __init__(self, field_path: str, message: str):
        super().__init__(f"{field_path}: {message}")
        self.field = field_path
        self.message = message

    def under(self, section: str) -> "ConfigError":
        """The same error with `section.` prefixed to the field path (sections name only their own fields)."""
        return ConfigError(f"{section}.{self.field}" if section else self.field, self.message)


def _require(condition: bool, field_path: str, message: str) -> None:
    if not condition:
        raise ConfigError(field_path, message)


@dataclass(frozen=True)
class LoraConfig:
    """LoRA adapter shape for `unit_mode: adapter` (peft)."""

    r: int = 8
    alpha: int = 16
    dropout: float = 0.0

    def __post_init__(self) -> None:
        _require(self.r >= 1, "r", f"must be >= 1, got {self.r}")
        _require(0.0 <= self.dropout < 1.0, "dropout", f"must be in [0, 1), got {self.dropout}")


# The values of `ModelConfig.unit_mode` (the Literal below must list the same names).
UNIT_MODES: tuple[str, ...] = ("layer", "adapter", "bottleneck", "layernorm", "bias", "prompt", "dual_adapter")


@dataclass(frozen=True)
class ModelConfig:
    """Which VLM, from which weights, and what a selectable unit is.

    `checkpoint`: "foundation" = the tiny preset pretrained offline on easy-vqa and cached (built on first
    use); "foundation-med" = the same with medical-style VQA on MedMNIST modalities that no T2 client holds
    in the pretraining mix (`f3ocus.models.foundation`); "scratch" = the tiny preset with random weights (tests); anything else = a hub id or a local
    directory passed to `from_pretrained`.

    `selectable`: the stacks whose blocks are units (e.g. `[language]`: the LLM blocks of LLaVA / BLIP-2, as
    the paper selects; stacks: vision, connector, qformer, language, fusion); null = every block. Blocks of
    other stacks stay frozen and are never offered to a selector.

    `unit_mode`: what a unit trains. "layer" = the block's own weights; "adapter" = LoRA (`lora`) in every
    Linear of the block; "bottleneck" = one bottleneck adapter (width `bottleneck_dim`) on the block's
    output; "layernorm" = the block's norm weights/biases; "bias" = the block's bias tensors (BitFit);
    "prompt" = `prompt_length` learned prompt vectors trained with the head (units own nothing). With
    `selection.method: full` these are the paper's PEFT baselines (`f3ocus.models.peft_modes`).
    "dual_adapter" = FedDAT's dual-adapter teacher: the unit's shared bottleneck adapter (averaged), and per
    client a personal one of the same shape kept as client state (needs `federation.local_objective: feddat`).
    """

    family: str = "llava"
    checkpoint: str = "foundation"
    unit_mode: Literal["layer", "adapter", "bottleneck", "layernorm", "bias", "prompt", "dual_adapter"] = "layer"
    selectable: tuple[str, ...] | None = None
    lora: LoraConfig = field(default_factory=LoraConfig)
    bottleneck_dim: int = 16
    prompt_length: int = 4
    image_size: int = 32
    cache_dir: str | None = None

    def __post_init__(self) -> None:
        _require(self.unit_mode in UNIT_MODES, "unit_mode",
                 f"must be one of {', '.join(UNIT_MODES)}, got {self.unit_mode!r}")
        _require(self.bottleneck_dim >= 1, "bottleneck_dim", f"must be >= 1, got {self.bottleneck_dim}")
        _require(self.prompt_length >= 1, "prompt_length", f"must be >= 1, got {self.prompt_length}")
        _require(self.image_size >= 8, "image_size", f"must be >= 8, got {self.image_size}")
        _require(self.selectable is None or len(self.selectable) > 0, "selectable",
                 "must name at least one stack, or be null (every block)")


@dataclass(frozen=True)
class PartitionConfig:
    """How rows become clients: `natural` (one client per value of column `by`), `dirichlet` label skew, `iid`."""

    scheme: Literal["natural", "dirichlet", "iid"] = "natural"
    by: str = "modality"
    num_clients: int | None = None
    alpha: float = 0.5
    label_column: str = "answer"

    def __post_init__(self) -> None:
        _require(self.scheme in ("natural", "dirichlet", "iid"), "scheme",
                 f"must be natural, dirichlet or iid, got {self.scheme!r}")
        if self.scheme != "natural":
            _require(self.num_clients is not None and self.num_clients >= 1, "num_clients",
                     f"scheme {self.scheme!r} needs num_clients >= 1")
        _require(self.alpha > 0, "alpha", f"must be > 0, got {self.alpha}")


@dataclass(frozen=True)
class SourceConfig:
    """One source of a `task: multi_source` dataset; all its rows become one client named `name`.

    `task`, `path` and `modalities` mean what they mean in `DataConfig` for that task (any task but
    multi_source). `name`: the client and `source` value of its rows (default: `task`); names must differ.
    """

    task: str
    path: str | None = None
    name: str | None = None
    modalities: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        _require(self.task != "multi_source", "task", "a source cannot itself be multi_source")
        _require(self.name is None or bool(self.name.strip()), "name", "must be a non-empty name or null")

    @property
    def client(self) -> str:
        """The client (and source) name of this source's rows."""
        return self.name or self.task


@dataclass(frozen=True)
class DataConfig:
    """Which VQA data, where from, how much.

    `task`: ultra_medvqa (MedMNIST-v2 `.npz` folder -> VQA; `path: null` generates synthetic `.npz`),
    easy_vqa, slake, vqa_rad, pathvqa (hub name or local directory in `path`), vqamed (an ImageCLEF
    VQA-Med year folder in `path`), easy_vqa_domains (easy-vqa under image-domain shifts, one client per
    shift named in `modalities`), cxr_multilabel (chest X-ray multi-label classification rows from a CSV +
    image folder in `path`; `path: null` generates a synthetic one), multi_source (`sources`, one client each).
    `on_bad_row`: what a bad row does (an unreadable, truncated, 16-bit/float or empty image; a missing
    question or answer; an answer outside the builder's closed answer set; a MedMNIST label out of range):
    "fail" stops before Ray starts with `data error: <file>: row <i>: <problem>` (exit code 2); "skip" drops
    it and the prepared store counts skipped rows per reason (`FederatedStore.bad_rows`). Whatever the
    policy, a structurally broken file (an `.npz` missing a key, of the wrong rank, with image and label
    counts that differ) and an empty client (a file or requested modality left with no row) are errors.
    `validation_fraction`: share of each client's train rows held out as its validation split (never trained
    on; carved after `samples_per_client` caps the client, so the test rows are the same with or without it).
    `evaluate_on`: which split `eval/*` scores ("validation" needs validation_fraction > 0): choose schedules
    and options on validation, report on test.
    """

    task: str = "ultra_medvqa"
    path: str | None = None
    modalities: tuple[str, ...] | None = None
    samples_per_client: int | None = 400
    test_fraction: float = 0.2
    npz_size: int = 28
    partition: PartitionConfig = field(default_factory=PartitionConfig)
    on_bad_row: Literal["fail", "skip"] = "fail"
    sources: tuple[SourceConfig, ...] = ()
    validation_fraction: float = 0.0
    evaluate_on: Literal["test", "validation"] = "test"

    def __post_init__(self) -> None:
        _require(0.0 < self.test_fraction < 1.0, "test_fraction", f"must be in (0, 1), got {self.test_fraction}")
        if self.task == "multi_source":
            _require(len(self.sources) >= 1, "sources", "task multi_source needs at least one source")
            _require(self.modalities is None, "modalities", "task multi_source takes modalities per source")
            names = [source.client for source in self.sources]
            duplicate = sorted({name for name in names if names.count(name) > 1})
            _require(not duplicate, "sources", f"two sources share the client name {duplicate[:1]}; set `name`")
        else:
            _require(not self.sources, "sources", f"only task multi_source reads sources (task is {self.task!r})")
        _require(self.samples_per_client is None or self.samples_per_client >= 10, "samples_per_client",
                 f"must be >= 10 or null, got {self.samples_per_client}")
        _require(self.on_bad_row in ("fail", "skip"), "on_bad_row", f"must be fail or skip, got {self.on_bad_row!r}")
        _require(0.0 <= self.validation_fraction < 1.0, "validation_fraction",
                 f"must be in [0, 1), got {self.validation_fraction}")
        _require(self.evaluate_on in ("test", "validation"), "evaluate_on",
                 f"must be test or validation, got {self.evaluate_on!r}")
        _require(self.evaluate_on == "test" or self.validation_fraction > 0, "evaluate_on",
                 "evaluate_on: validation needs validation_fraction > 0")

    @property
    def eval_split(self) -> str:
        """The store split `eval/*` is computed on ("test" or "val")."""
        return "val" if self.evaluate_on == "validation" else "test"


@dataclass(frozen=True)
class ResourcesConfig:
    """Ray resources of one actor. `num_gpus` may be fractional (0.25 = four actors share a GPU)."""

    num_cpus: float = 1.0
    num_gpus: float = 0.0

    def __post_init__(self) -> None:
        _require(self.num_cpus >= 0, "num_cpus", f"must be >= 0, got {self.num_cpus}")
        _require(self.num_gpus >= 0, "num_gpus", f"must be >= 0, got {self.num_gpus}")


@dataclass(frozen=True)
class FederationConfig:
    """The federated loop: rounds, local training, the actor pool, per-client budgets.

    `budgets`: units each client may train per round, one int for all clients or one per client
    (in the store's sorted client order). `num_actors` workers serve all clients in turn. `engine: local`
    runs the same coordinator and one worker in this process, without Ray (debugging, baselines).
    Fault tolerance: a client task that raises, or whose actor dies (the actor is replaced), is retried
    `client_retries` more times before it counts as failed; failed clients and updates holding NaN/Inf
    are left out of the round's average. A round needs `min_clients` usable updates (its training is
    retried once for the failed clients), else the run stops with the reasons, its last checkpoint intact.
    A dead coordinator actor is restarted from the last checkpoint up to `coordinator_restarts` times.
    `upload_dtype`: the dtype clients cast their uploaded tensors to (float16/bfloat16 halve the upload);
    the coordinator casts them back to the global dtype before averaging.
    `head_lr`: AdamW learning rate of the answer head(s); null = `lr`. A head whose answers the foundation
    never saw starts from random weights and learns slowly at a backbone's rate.
    `precision`: clients' forward/backward in float32 ("fp32") or under bfloat16 autocast ("bf16"; weights,
    optimiser state and uploads stay float32, LNTK Grams are formed in float32 or wider).
    `local_objective`: how a client trains (`f3ocus.models.local_objectives`): "supervised" (the task loss) or
    "feddat" (FedDAT's mutual distillation between a dual-adapter teacher and the student; each client keeps
    its personal adapters as client state; needs `model.unit_mode: dual_adapter`). `distill_temperature`: T of
    FedDAT's distillation loss.
    """

    rounds: int = 5
    engine: Literal["ray", "local"] = "ray"
    local_epochs: int = 1
    batch_size: int = 32
    lr: float = 1e-3
    head_lr: float | None = None
    weight_decay: float = 0.0
    budgets: int | tuple[int, ...] = 2
    num_actors: int = 2
    worker_resources: ResourcesConfig = field(default_factory=ResourcesConfig)
    coordinator_resources: ResourcesConfig = field(default_factory=lambda: ResourcesConfig(num_cpus=0.0))
    train_head: bool = True
    eval_batch_size: int = 128
    coordinator_restarts: int = 1
    client_retries: int = 1
    min_clients: int = 1
    upload_dtype: Literal["float32", "float16", "bfloat16"] = "float32"
    precision: Literal["fp32", "bf16"] = "fp32"
    local_objective: Literal["supervised", "feddat"] = "supervised"
    distill_temperature: float = 3.0

    def __post_init__(self) -> None:
        _require(self.local_objective in ("supervised", "feddat"), "local_objective",
                 f"must be supervised or feddat, got {self.local_objective!r}")
        _require(self.distill_temperature > 0, "distill_temperature", f"must be > 0, got {self.distill_temperature}")
        _require(self.precision in ("fp32", "bf16"), "precision", f"must be fp32 or bf16, got {self.precision!r}")
        _require(self.upload_dtype in ("float32", "float16", "bfloat16"), "upload_dtype",
                 f"must be float32, float16 or bfloat16, got {self.upload_dtype!r}")
        _require(self.rounds >= 1, "rounds", f"must be >= 1, got {self.rounds}")
        _require(self.local_epochs >= 1, "local_epochs", f"must be >= 1, got {self.local_epochs}")
        _require(self.batch_size >= 1, "batch_size", f"must be >= 1, got {self.batch_size}")
        _require(self.lr > 0, "lr", f"must be > 0, got {self.lr}")
        _require(self.head_lr is None or self.head_lr > 0, "head_lr", f"must be > 0 or null, got {self.head_lr}")
        _require(self.num_actors >= 1, "num_actors", f"must be >= 1, got {self.num_actors}")
        _require(self.coordinator_restarts >= 0, "coordinator_restarts", f"must be >= 0, got {self.coordinator_restarts}")
        _require(self.client_retries >= 0, "client_retries", f"must be >= 0, got {self.client_retries}")
        _require(self.min_clients >= 1, "min_clients", f"must be >= 1, got {self.min_clients}")
        budgets = self.budgets if isinstance(self.budgets, tuple) else (self.budgets,)
        for index, budget in enumerate(budgets):
            where = "budgets" if isinstance(self.budgets, int) else f"budgets[{index}]"
            _require(isinstance(budget, int) and budget >= 1, where, f"must be an integer >= 1, got {budget!r}")


@dataclass(frozen=True)
class SelectionConfig:
    """Which units each client trains each round.

    `method`: a registered selector (full, fed_dropout, random (a static subset), first_k, last_k, top_k,
    lntk, f3ocus, ...). `scorer`: the per-unit importance scorer clients run when the selector needs scores
    (top_k, lntk, f3ocus): grad_norm, lntk[_<solver>_<kernel>], or a paper baseline (magnitude, fisher,
    gradflow, grasp, snip, rgn, synflow, fedselect, spt; with top_k).
    `score_batch_size`: samples per client used for scoring.
    F3OCUS server step (read only by method "f3ocus"): `solver` (nsga2, abc, aco, sa, mopso, flow, exact),
    `pop_size` and `max_evals` (objective evaluations per round), `archive_size` (most front points kept),
    `decision` (knee | pseudo_weights: how one front point is picked) and `decision_weight` (importance
    weight for pseudo_weights).
    """

    method: str = "top_k"
    scorer: str = "grad_norm"
    score_batch_size: int = 16
    # F3OCUS server step (method "f3ocus"); see f3ocus/selection/f3ocus_selector.py.
    solver: str = "nsga2"
    pop_size: int = 100
    max_evals: int = 10000
    archive_size: int = 100
    decision: str = "knee"
    decision_weight: float = 0.5

    def __post_init__(self) -> None:
        _require(self.score_batch_size >= 1, "score_batch_size", f"must be >= 1, got {self.score_batch_size}")
        solvers = ("nsga2", "abc", "aco", "sa", "mopso", "flow", "exact")  # keys of f3ocus.selection.solvers.SOLVERS
        _require(self.solver in solvers, "solver", f"must be one of {', '.join(solvers)}, got {self.solver!r}")
        _require(self.pop_size >= 2, "pop_size", f"must be >= 2, got {self.pop_size}")
        _require(self.max_evals >= self.pop_size, "max_evals",
                 f"must be >= pop_size ({self.pop_size}), got {self.max_evals}")
        _require(self.archive_size >= 2, "archive_size", f"must be >= 2, got {self.archive_size}")
        _require(self.decision in ("knee", "pseudo_weights"), "decision",
                 f"must be 'knee' or 'pseudo_weights', got {self.decision!r}")
        _require(0.0 <= self.decision_weight <= 1.0, "decision_weight", f"must be in [0, 1], got {self.decision_weight}")


@dataclass(frozen=True)
class TrackingConfig:
    """Where results go. `tracking_uri: null` = sqlite at `<output_dir>/mlflow.db` unless MLFLOW_TRACKING_URI is set."""

    output_dir: str = "runs"
    experiment: str = "f3ocus"
    run_name: str | None = None
    mlflow: bool = True
    tracking_uri: str | None = None


@dataclass(frozen=True)
class ExperimentConfig:
    """A whole experiment; `seed` derives every random generator (data, model init, clients, selection)."""

    name: str = "experiment"
    seed: int = 0
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    federation: FederationConfig = field(default_factory=FederationConfig)
    selection: SelectionConfig = field(default_factory=SelectionConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
