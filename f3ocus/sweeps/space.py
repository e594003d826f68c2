"""A `SweepSpec`'s search spaces as a Ray Tune `param_space`, and its scheduler.

The param space is flat: one entry per searched dot-key (`{"selection.solver": grid_search([...])}`),
so a trial's config is exactly its space values and its params in MLflow keep the schema's names.
"""

from __future__ import annotations

from typing import Any

from f3ocus.sweeps.spec import SweepSpec


def param_space(spec: SweepSpec) -> dict[str, Any]:
    """`grid` -> `tune.grid_search`, `choice` -> `tune.choice`, `uniform`/`loguniform` -> the same in Tune."""
    from ray import tune

    build = {"grid": lambda values: tune.grid_search(list(values)),
             "choice": lambda values: tune.choice(list(values)),
             "uniform": lambda values: tune.uniform(*values),
             "loguniform": lambda values: tune.loguniform(*values)}
    return {space.key: build[space.kind](space.values) for space in spec.spaces}


def scheduler(spec: SweepSpec, max_rounds: int) -> Any:
    """None (run every trial to its last round) or ASHA on the sweep's metric, one step per round."""
    from ray.tune.schedulers import ASHAScheduler

    options = spec.options.scheduler
    if options.type == "none":
        return None
    return ASHAScheduler(time_attr="round", max_t=options.max_t or max_rounds,
                         grace_period=min(options.grace_period, options.max_t or max_rounds),
                         reduction_factor=options.reduction_factor)


def search_algorithm(spec: SweepSpec) -> Any:
    """Tune's default grid/random search, seeded by `search_seed` so random spaces draw the same trials."""
    from ray.tune.search.basic_variant import BasicVariantGenerator

    return BasicVariantGenerator(random_state=spec.options.search_seed,
                                 max_concurrent=spec.options.max_concurrent_trials)
