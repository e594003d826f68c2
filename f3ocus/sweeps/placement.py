"""A trial's placement group: one bundle for the trial function, the coordinator and each client actor.

A trial on the local engine (`federation.engine: local`) starts no actors: the trial process itself is the
coordinator and the one worker (`LocalPool`, torch threads = `worker_resources.num_cpus`), so its group is a
single bundle, `trial_resources.driver` + `federation.worker_resources` (`num_actors` is not used there).

Tune reserves the whole group before a trial starts, so a trial never oversubscribes the cluster and a
full cluster just queues trials. On the Ray engine, bundle 0 is the trial function (`trial_resources.driver`,
empty by default: it only prepares data and reports). Then the coordinator (`federation.coordinator_resources`)
and one bundle per client actor (`federation.worker_resources`, `federation.num_actors` times).

Ray rejects bundles that reserve nothing, and Tune drops an empty head bundle from the group it creates,
so: a coordinator that reserves nothing gets no bundle and runs (with zero resources) in bundle 0 of
the group; indices here are those of the group as Ray creates it. `check_fits` compares trials with the
cluster before Tune starts, so a trial that could never be placed fails at once instead of waiting forever.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

from f3ocus.config.schema import ConfigError, ExperimentConfig, ResourcesConfig


@dataclass(frozen=True)
class TrialLayout:
    """`bundles` for `tune.PlacementGroupFactory` (head first); bundle indices in the created group.

    `in_process`: the local engine, no actors (no coordinator or client bundles: both indices are unused).
    """

    bundles: tuple[dict[str, float], ...]
    strategy: str
    coordinator_bundle: int
    client_bundles: tuple[int, ...]
    in_process: bool = False

    @property
    def reserved(self) -> dict[str, float]:
        """Everything the trial reserves: the sum of its bundles."""
        total: dict[str, float] = {}
        for bundle in self.bundles:
            for resource, amount in bundle.items():
                total[resource] = total.get(resource, 0.0) + amount
        return total


def bundle(resources: ResourcesConfig) -> dict[str, float]:
    """`{"CPU": ..., "GPU": ...}` without zero entries (an all-zero config gives `{}`)."""
    return {name: float(amount) for name, amount in (("CPU", resources.num_cpus), ("GPU", resources.num_gpus))
            if amount > 0}


def trial_layout(cfg: ExperimentConfig, driver: ResourcesConfig, strategy: str = "PACK") -> TrialLayout:
    """The placement group of one trial of experiment `cfg`.

    Raises:
        ConfigError: client actors (or the local engine's in-process worker) that reserve nothing.
    """
    fed = cfg.federation
    head, coordinator, client = bundle(driver), bundle(fed.coordinator_resources), bundle(fed.worker_resources)
    if fed.engine == "local":
        return _in_process_layout(head, client, strategy)
    if not client:
        raise ConfigError("federation.worker_resources",
                          "a sweep trial reserves one bundle per client actor: num_cpus or num_gpus must be > 0")
    bundles = [head, *([coordinator] if coordinator else []), *([client] * fed.num_actors)]
    shift = 0 if head else 1  # Tune creates the group without an empty head bundle
    first_client = 1 + bool(coordinator) - shift
    return TrialLayout(
        bundles=tuple(bundles), strategy=strategy,
        coordinator_bundle=(1 - shift) if coordinator else 0,
        client_bundles=tuple(range(first_client, first_client + fed.num_actors)))


def _in_process_layout(head: dict[str, float], worker: dict[str, float], strategy: str) -> TrialLayout:
    """One bundle: the trial function plus the worker it runs in its own process (the local engine)."""
    merged = {resource: head.get(resource, 0.0) + worker.get(resource, 0.0)
              for resource in sorted({*head, *worker})}
    if not merged:
        raise ConfigError("federation.worker_resources", "a local-engine sweep trial runs its worker in the trial "
                                                         "process and reserves it: num_cpus or num_gpus must be > 0")
    return TrialLayout(bundles=(merged,), strategy=strategy, coordinator_bundle=0, client_bundles=(),
                       in_process=True)


def check_fits(layouts: Iterable[tuple[str, TrialLayout]], nodes: Sequence[Mapping[str, float]]) -> None:
    """Every trial can be placed on the cluster: each bundle on some node, the sum on the cluster
    (for STRICT_PACK on one node; for STRICT_SPREAD one node per bundle).

    Args:
        layouts: (trial description, layout) pairs.
        nodes: the total resources of each alive node (`ray.nodes()[i]["Resources"]`).

    Raises:
        ConfigError: naming `trial_resources` and what does not fit where.
    """
    cluster: dict[str, float] = {}
    for node in nodes:
        for resource, amount in node.items():
            cluster[resource] = cluster.get(resource, 0.0) + amount
    for description, layout in layouts:
        real = [b for b in layout.bundles if b]
        for single in real:
            if not any(_fits(single, node) for node in nodes):
                raise _too_big(description, f"its bundle {single} fits on no node", cluster)
        if not _fits(layout.reserved, cluster):
            raise _too_big(description, f"it reserves {layout.reserved} in all", cluster)
        if layout.strategy == "STRICT_PACK" and not any(_fits(layout.reserved, node) for node in nodes):
            raise _too_big(description, f"STRICT_PACK needs {layout.reserved} on one node", cluster)
        if layout.strategy == "STRICT_SPREAD" and len(real) > len(nodes):
            raise _too_big(description, f"STRICT_SPREAD needs {len(real)} nodes", cluster)


def _fits(need: Mapping[str, float], have: Mapping[str, Any]) -> bool:
    return all(float(have.get(resource, 0.0)) + 1e-9 >= amount for resource, amount in need.items())


def _too_big(description: str, what: str, cluster: Mapping[str, float]) -> ConfigError:
    shown = {k: v for k, v in cluster.items() if k in ("CPU", "GPU") or not k.startswith(("node:", "memory",
                                                                                         "object_store"))}
    return ConfigError("trial_resources", f"the trial {description} can never start: {what}, and the cluster "
                                          f"has {shown}. Lower federation.num_actors or the actors' num_cpus / "
                                          f"num_gpus, or add nodes")
