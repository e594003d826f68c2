"""`check_actors_fit`: a pool of identical client actors must fit the cluster's nodes all at once."""

from __future__ import annotations

import pytest

from f3ocus.config.schema import ConfigError
from f3ocus.federated.pool import check_actors_fit

TWO_GPUS = [{"CPU": 4.0, "GPU": 2.0, "memory": 1e9, "node:127.0.0.1": 1.0}]


def test_quarter_gpu_actors_pack_four_per_gpu():
    check_actors_fit(8, {"num_cpus": 0.5, "num_gpus": 0.25}, TWO_GPUS)  # 2 GPUs / 0.25 = 8, 4 CPUs / 0.5 = 8
    with pytest.raises(ConfigError) as error:
        check_actors_fit(9, {"num_cpus": 0.5, "num_gpus": 0.25}, TWO_GPUS)
    assert error.value.field == "federation.worker_resources"
    assert "9 client actors" in str(error.value) and "hold 8 of them" in str(error.value)


def test_the_scarcest_resource_of_each_node_decides_and_nodes_add_up():
    nodes = [{"CPU": 2.0, "GPU": 1.0}, {"CPU": 8.0}]  # node 0: min(2 CPU / 1, 1 GPU / 0.3 -> 3) = 2; node 1: no GPU
    check_actors_fit(2, {"num_cpus": 1, "num_gpus": 0.3}, nodes)
    with pytest.raises(ConfigError, match="hold 2 of them"):
        check_actors_fit(3, {"num_cpus": 1, "num_gpus": 0.3}, nodes)
    check_actors_fit(10, {"num_cpus": 1, "num_gpus": 0}, nodes)  # CPU only: 2 + 8
    with pytest.raises(ConfigError, match="hold 10 of them"):
        check_actors_fit(11, {"num_cpus": 1}, nodes)


def test_a_gpu_larger_than_any_node_never_fits_and_nothing_asked_always_does():
    with pytest.raises(ConfigError, match="hold 0 of them"):
        check_actors_fit(1, {"num_cpus": 1, "num_gpus": 3}, TWO_GPUS)
    check_actors_fit(100, {"num_cpus": 0, "num_gpus": 0}, [])
    with pytest.raises(ConfigError, match="hold 0 of them"):
        check_actors_fit(1, {"num_cpus": 1, "resources": {"node_b": 1}}, TWO_GPUS)  # custom resources count too
