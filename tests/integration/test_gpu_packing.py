"""GPU fractions on a real local Ray with 2 declared GPUs (`ray.init(num_gpus=2)` on a machine that has none).

- 8 client actors at `num_gpus: 0.25` are packed 4 per GPU; each sees the GPU id Ray gave it as its
  `CUDA_VISIBLE_DEVICES` and, finding no CUDA device behind it, falls back to the CPU with a reason.
- a sweep trial's placement group (built by Tune's `PlacementGroupFactory` from `trial_layout`, as a trial is)
  reserves exactly those fractions, and the trial's client actors pinned to its bundles are packed the same way.
- a sweep whose trial asks for more GPU than the cluster has, and a plain run whose client actors cannot all
  fit, are refused up front: `f3ocus sweep` / `f3ocus run` exit 2 naming the field, no actor is started.

The actors are `DeviceProbe`s: no model, only the worker's device pick (`f3ocus.utils.device.pick_device`, what
`ClientWorker.__init__` calls) and `device_info()`, so that 16 actor starts take seconds, not minutes.
"""

from __future__ import annotations

import collections
import os
import sys

import pytest
import yaml

from f3ocus.cli import main
from f3ocus.config import load_config
from f3ocus.config.schema import ConfigError, ResourcesConfig
from f3ocus.federated.pool import RayPool
from f3ocus.federated.ray_engine import ActorPlacement
from f3ocus.federated.worker import WorkerSpec
from f3ocus.sweeps.placement import trial_layout

pytestmark = [pytest.mark.ray, pytest.mark.integration]

BASE = "configs/smoke/cpu_tiny.yaml"
QUARTER = ["federation.num_actors=8", "federation.worker_resources={num_cpus: 0.5, num_gpus: 0.25}"]


class DeviceProbe:
    """A client worker reduced to its device pick: what Ray assigned, what the process sees, what it chose."""

    def __init__(self, spec: WorkerSpec):
        from f3ocus.utils.device import pick_device

        self._choice = pick_device(spec.config.federation.worker_resources.num_gpus)

    def device_info(self) -> dict:
        return {**self._choice.as_dict(), "pid": os.getpid()}


@pytest.fixture(scope="module")
def fake_gpus(cache_env):
    import ray

    from f3ocus.experiment import OFFLINE_ENV

    assert not ray.is_initialized()
    env = {**OFFLINE_ENV, "F3OCUS_CACHE_DIR": str(cache_env), "OMP_NUM_THREADS": "1"}
    ray.init(num_cpus=4, num_gpus=2, include_dashboard=False, configure_logging=False, runtime_env={"env_vars": env})
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the probe class travels by value
    try:
        yield ray
    finally:
        ray.cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
        ray.shutdown()


def _spec(*overrides: str) -> WorkerSpec:
    return WorkerSpec(load_config(BASE, [*QUARTER, *overrides]), store_dir="", model_cache_dir=None, num_threads=1)


def _assert_packed_four_per_gpu(devices: list[dict]) -> None:
    assert len(devices) == 8 and len({device["pid"] for device in devices}) == 8
    assert all(len(device["ray_gpu_ids"]) == 1 for device in devices)
    assert collections.Counter(device["ray_gpu_ids"][0] for device in devices) == {"0": 4, "1": 4}
    for device in devices:  # Ray's assignment is what the process sees, and no CUDA is behind it here
        assert device["visible_devices"] == device["ray_gpu_ids"][0]
        assert device["device"] == "cpu" and device["fallback"] and device["num_gpus"] == 0.25
        assert "running on the CPU" in device["reason"]


def _wait_for_gpus(ray, amount: float) -> None:
    import time

    deadline = time.monotonic() + 30
    while ray.available_resources().get("GPU", 0.0) < amount and time.monotonic() < deadline:
        time.sleep(0.2)
    assert ray.available_resources().get("GPU", 0.0) == pytest.approx(amount)


def test_quarter_gpu_client_actors_pack_four_per_gpu(fake_gpus):
    spec = _spec()
    fed = spec.config.federation
    pool = RayPool(spec, fed.num_actors, {"num_cpus": fed.worker_resources.num_cpus,
                                          "num_gpus": fed.worker_resources.num_gpus}, worker_cls=DeviceProbe)
    try:
        _assert_packed_four_per_gpu(pool.devices())
        assert fake_gpus.available_resources().get("GPU", 0.0) == 0.0  # 8 x 0.25 = both GPUs
    finally:
        pool.shutdown()
    _wait_for_gpus(fake_gpus, 2.0)
    with pytest.raises(ConfigError, match="hold 8 of them") as error:  # a ninth would wait forever: refused
        RayPool(spec, 9, {"num_cpus": 0.5, "num_gpus": 0.25}, worker_cls=DeviceProbe)
    assert error.value.field == "federation.worker_resources"


def test_a_trials_placement_group_reserves_the_fractions_and_pins_the_actors(fake_gpus):
    from ray import tune
    from ray.util.placement_group import placement_group_table, remove_placement_group

    spec = _spec()
    layout = trial_layout(spec.config, ResourcesConfig(num_cpus=0), "PACK")
    assert layout.reserved == {"CPU": 4.0, "GPU": 2.0}
    group = tune.PlacementGroupFactory([dict(bundle) for bundle in layout.bundles],
                                       strategy=layout.strategy).to_placement_group()  # what Tune creates
    try:
        fake_gpus.get(group.ready(), timeout=60)
        bundles = placement_group_table(group)["bundles"]
        assert [bundles[index] for index in layout.client_bundles] == [{"CPU": 0.5, "GPU": 0.25}] * 8
        assert fake_gpus.available_resources().get("GPU", 0.0) == 0.0  # reserved by the group, before any actor
        placement = ActorPlacement(group, layout.coordinator_bundle, layout.client_bundles)
        pool = RayPool(spec, 8, {"num_cpus": 0.5, "num_gpus": 0.25}, worker_cls=DeviceProbe,
                       slot_options=[placement.options(index) for index in layout.client_bundles])
        try:
            _assert_packed_four_per_gpu(pool.devices())
        finally:
            pool.shutdown()
    finally:
        remove_placement_group(group)
    _wait_for_gpus(fake_gpus, 2.0)


@pytest.fixture(scope="module")
def output_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("gpu-runs")


def test_a_sweep_trial_asking_for_more_gpu_than_the_cluster_has_exits_2(fake_gpus, output_dir, tmp_path, capsys):
    sweep = {"name": "too_many_gpus", "base": os.path.abspath(BASE),
             "set": {"federation.rounds": 1, "federation.num_actors": 3, "data.samples_per_client": 20,
                     "federation.worker_resources": {"num_cpus": 0.5, "num_gpus": 1},
                     "tracking.mlflow": False, "tracking.output_dir": str(output_dir)},
             "grid": {"seed": [0]}, "max_concurrent_trials": 1}
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(sweep))
    assert main(["sweep", str(path)]) == 2
    err = capsys.readouterr().err
    assert "config error: trial_resources:" in err and "can never start" in err and "'GPU': 3.0" in err
    assert fake_gpus.available_resources().get("GPU", 0.0) == 2.0  # nothing was reserved or started


def test_a_run_whose_client_actors_cannot_all_fit_exits_2_before_any_actor_starts(fake_gpus, output_dir, capsys):
    argv = ["run", BASE, "--set", "federation.num_actors=3",
            "--set", "federation.worker_resources={num_cpus: 0.5, num_gpus: 1}", "--set", "data.samples_per_client=20",
            "--set", "tracking.mlflow=false", "--set", f"tracking.output_dir={output_dir}"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "config error: federation.worker_resources:" in err and "hold 2 of them" in err
    assert fake_gpus.available_resources().get("GPU", 0.0) == 2.0
