"""A trial's placement group: head bundle, coordinator bundle, one per client actor (Ray engine), one bundle
for the trial process (local engine); fit checks."""

import pytest

from f3ocus.config import load_config
from f3ocus.config.schema import ConfigError, ResourcesConfig
from f3ocus.sweeps.placement import check_fits, trial_layout

BASE = "configs/smoke/cpu_tiny.yaml"
NONE = ResourcesConfig(num_cpus=0)


def _cfg(*overrides):
    return load_config(BASE, list(overrides))


def test_empty_head_and_coordinator_share_the_first_client_bundle():
    layout = trial_layout(_cfg("federation.num_actors=2"), NONE)
    assert layout.bundles == ({}, {"CPU": 1.0}, {"CPU": 1.0})
    # Tune drops the empty head: the group is [client0, client1]; the coordinator reserves nothing.
    assert layout.coordinator_bundle == 0 and layout.client_bundles == (0, 1)
    assert layout.reserved == {"CPU": 2.0}


def test_coordinator_and_driver_bundles_with_gpu_fractions():
    cfg = _cfg("federation.num_actors=3", "federation.coordinator_resources={num_cpus: 1, num_gpus: 0}",
               "federation.worker_resources={num_cpus: 1, num_gpus: 0.25}")
    layout = trial_layout(cfg, ResourcesConfig(num_cpus=0.5), "SPREAD")
    assert layout.bundles == ({"CPU": 0.5}, {"CPU": 1.0}, *[{"CPU": 1.0, "GPU": 0.25}] * 3)
    assert layout.coordinator_bundle == 1 and layout.client_bundles == (2, 3, 4)
    assert layout.reserved == {"CPU": 4.5, "GPU": 0.75} and layout.strategy == "SPREAD"
    no_head = trial_layout(cfg, NONE)
    assert no_head.coordinator_bundle == 0 and no_head.client_bundles == (1, 2, 3)
    with_head = trial_layout(_cfg(), ResourcesConfig(num_cpus=1))
    assert with_head.coordinator_bundle == 0 and with_head.client_bundles == (1, 2)


def test_client_actors_must_reserve_something():
    with pytest.raises(ConfigError) as error:
        trial_layout(_cfg("federation.worker_resources={num_cpus: 0, num_gpus: 0}"), NONE)
    assert error.value.field == "federation.worker_resources"


def test_local_engine_trial_is_one_bundle_for_its_own_process():
    # The trial process runs the coordinator and the one worker: driver + worker resources, no actors.
    cfg = _cfg("federation.engine=local", "federation.num_actors=3",
               "federation.coordinator_resources={num_cpus: 1, num_gpus: 0}",
               "federation.worker_resources={num_cpus: 2, num_gpus: 0.5}")
    layout = trial_layout(cfg, ResourcesConfig(num_cpus=0.5), "SPREAD")
    assert layout.in_process and layout.bundles == ({"CPU": 2.5, "GPU": 0.5},) and layout.client_bundles == ()
    assert layout.reserved == {"CPU": 2.5, "GPU": 0.5} and layout.strategy == "SPREAD"
    assert trial_layout(_cfg("federation.engine=local"), NONE).bundles == ({"CPU": 1.0},)
    assert not trial_layout(_cfg(), NONE).in_process
    with pytest.raises(ConfigError) as error:
        trial_layout(_cfg("federation.engine=local", "federation.worker_resources={num_cpus: 0, num_gpus: 0}"), NONE)
    assert error.value.field == "federation.worker_resources"


def test_check_fits():
    two_nodes = [{"CPU": 2.0, "node_a": 10.0}, {"CPU": 2.0, "node_b": 10.0}]
    check_fits([("t", trial_layout(_cfg("federation.num_actors=4"), NONE, "SPREAD"))], two_nodes)
    with pytest.raises(ConfigError, match="can never start") as error:
        check_fits([("seed=0", trial_layout(_cfg("federation.num_actors=5"), NONE))], two_nodes)
    assert error.value.field == "trial_resources" and "seed=0" in str(error.value)
    with pytest.raises(ConfigError, match="fits on no node"):
        check_fits([("t", trial_layout(_cfg("federation.worker_resources={num_cpus: 3}"), NONE))], two_nodes)
    with pytest.raises(ConfigError, match="STRICT_PACK"):
        check_fits([("t", trial_layout(_cfg("federation.num_actors=3"), NONE, "STRICT_PACK"))], two_nodes)
    with pytest.raises(ConfigError, match="GPU"):
        check_fits([("t", trial_layout(_cfg("federation.worker_resources={num_cpus: 1, num_gpus: 0.5}"),
                                       NONE))], two_nodes)
