"""`f3ocus.utils.device`: the worker's device pick (Ray GPU ids, CUDA_VISIBLE_DEVICES, CPU fallback) and the
precision contexts."""

from __future__ import annotations

import logging
import sys
import types

import pytest
import torch
from torch import nn

from f3ocus.utils import device as device_module
from f3ocus.utils.device import autocast, check_precision, full_precision, model_device, pick_device, to_device


@pytest.fixture
def no_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


@pytest.fixture
def fake_ray(monkeypatch):
    """A stand-in `ray` module in sys.modules, as inside a Ray actor that Ray gave GPU id 1."""
    ray = types.SimpleNamespace(is_initialized=lambda: True, get_gpu_ids=lambda: [1])
    monkeypatch.setitem(sys.modules, "ray", ray)
    return ray


def test_no_gpu_asked_is_the_cpu_without_a_warning(caplog, no_cuda):
    with caplog.at_level(logging.INFO, logger=device_module.__name__):
        choice = pick_device(0.0)
    assert choice.device == torch.device("cpu") and not choice.fallback
    assert [record.levelno for record in caplog.records] == [logging.INFO]
    assert "num_gpus is 0" in caplog.records[0].getMessage()


def test_gpu_asked_without_cuda_falls_back_to_cpu_with_one_warning(caplog, monkeypatch, no_cuda, fake_ray):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    with caplog.at_level(logging.INFO, logger=device_module.__name__):
        choice = pick_device(0.25)
    assert choice.device == torch.device("cpu") and choice.fallback
    assert choice.ray_gpu_ids == ("1",) and choice.visible_devices == "1" and choice.cuda_devices == 0
    [record] = caplog.records
    assert record.levelno == logging.WARNING
    message = record.getMessage()
    for part in ("num_gpus=0.25", "Ray GPU ids ['1']", "CUDA_VISIBLE_DEVICES='1'", "running on the CPU"):
        assert part in message
    assert choice.as_dict()["ray_gpu_ids"] == ["1"] and choice.as_dict()["device"] == "cpu"


def test_gpu_asked_with_cuda_is_the_first_visible_device(monkeypatch, fake_ray):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index: "Fake GPU")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    choice = pick_device(0.5)
    assert choice.device == torch.device("cuda", 0) and not choice.fallback
    assert "Fake GPU" in choice.reason and choice.ray_gpu_ids == ("1",)


def test_outside_ray_no_gpu_ids_are_read(monkeypatch, no_cuda):
    monkeypatch.delitem(sys.modules, "ray", raising=False)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    choice = pick_device(1.0)
    assert choice.ray_gpu_ids == () and choice.visible_devices is None and "ray" not in sys.modules


def test_autocast_bf16_runs_linear_layers_in_bf16_and_full_precision_switches_it_off():
    layer = nn.Linear(4, 3)
    x = torch.randn(2, 4)
    cpu = torch.device("cpu")
    with autocast(cpu, "fp32"):
        assert layer(x).dtype == torch.float32
    with autocast(cpu, "bf16"):
        assert layer(x).dtype == torch.bfloat16
        with full_precision(cpu):
            assert layer(x).dtype == torch.float32
            assert not torch.is_autocast_enabled("cpu")
        assert torch.is_autocast_enabled("cpu")
    assert layer.weight.dtype == torch.float32
    with pytest.raises(ValueError, match="precision must be one of"):
        autocast(cpu, "fp16")
    assert check_precision("bf16") == "bf16"


def test_model_device_and_to_device():
    assert model_device(nn.Linear(2, 2)) == torch.device("cpu")
    assert model_device(nn.Identity()) == torch.device("cpu")  # no parameters
    moved = to_device({"a": torch.ones(2)}, torch.device("cpu"))
    assert moved["a"].device == torch.device("cpu")
