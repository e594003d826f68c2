"""Test-wide environment: offline hubs, no Ray auth, tiny caches under the test's tmp dir."""

import os

for key, value in {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "RAY_AUTH_MODE": "disabled",
                   "TOKENIZERS_PARALLELISM": "false", "RAY_USAGE_STATS_ENABLED": "0"}.items():
    os.environ.setdefault(key, value)


import pytest  # noqa: E402

CUDA_TESTS_ON_CPU = "F3OCUS_CUDA_TESTS_ON_CPU"


@pytest.fixture(scope="session")
def cuda_device():
    """The device of the `cuda`-marked tests: `cuda:0` when torch sees a GPU, else the test is skipped.

    With `F3OCUS_CUDA_TESTS_ON_CPU=1` they run on the CPU instead (`bench/gpu_check.sh --cpu` rehearses the
    device check that way on a machine without a GPU: the tests' own code runs, their CPU-vs-device
    comparisons are then trivially equal).
    """
    import torch

    if torch.cuda.is_available():
        return torch.device("cuda", 0)
    if os.environ.get(CUDA_TESTS_ON_CPU) == "1":
        return torch.device("cpu")
    pytest.skip("no CUDA device (bench/gpu_check.sh runs these on a GPU machine)")


@pytest.fixture
def no_tf32():
    """float32 matmuls and convolutions in float32 on the GPU (TF32 would round inputs to 10 mantissa bits)."""
    import torch

    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved
