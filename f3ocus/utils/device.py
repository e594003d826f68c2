"""Where a client's tensors live and in which precision its forward/backward runs.

`pick_device` turns what the scheduler gave a worker into a `torch.device`: a worker asking for
`num_gpus > 0` runs on `cuda:0` of its process, which is the first GPU Ray assigned to it (Ray writes
the assigned ids into `CUDA_VISIBLE_DEVICES` before the actor's code runs, so fractional actors sharing
GPU 1 all see it as their `cuda:0`). Without CUDA it falls back to the CPU and says why in one warning
line (asked for a GPU, what Ray assigned, what `CUDA_VISIBLE_DEVICES` holds, what torch can see).
Ray itself is only read when the process already imported it (a Ray actor always has), so the local
engine runs on machines without Ray.

`autocast(device, precision)` is the one switch of `federation.precision`: "fp32" runs as is, "bf16"
runs forward and backward under `torch.autocast(dtype=bfloat16)` while parameters, optimiser state and
uploads stay float32 (bf16 has float32's exponent range, so no loss scaling is needed). Code whose
numbers must stay float32 whatever the caller chose (the LNTK Grams and their eigenvalues) runs inside
`full_precision(device)`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from dataclasses import dataclass
from typing import Iterator

import torch
from torch import nn

PRECISIONS: tuple[str, ...] = ("fp32", "bf16")
VISIBLE_DEVICES = "CUDA_VISIBLE_DEVICES"

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DeviceChoice:
    """A worker's device and the facts it was chosen from.

    Attributes:
        device: where the model and every tensor of the worker live.
        num_gpus: the GPU share the worker asked for (`federation.worker_resources.num_gpus`).
        ray_gpu_ids: the GPU ids Ray assigned to this process (empty outside Ray or without GPUs).
        visible_devices: `CUDA_VISIBLE_DEVICES` as this process sees it (None when unset).
        cuda_devices: how many CUDA devices torch sees (0 without CUDA).
        fallback: True when a GPU was asked for but the worker runs on the CPU.
        reason: one line saying which device and why (what the worker logs).
    """

    device: torch.device
    num_gpus: float
    ray_gpu_ids: tuple[str, ...]
    visible_devices: str | None
    cuda_devices: int
    fallback: bool
    reason: str

    def as_dict(self) -> dict[str, object]:
        """Plain data (for replies, logs and tests)."""
        return {"device": str(self.device), "num_gpus": self.num_gpus, "ray_gpu_ids": list(self.ray_gpu_ids),
                "visible_devices": self.visible_devices, "cuda_devices": self.cuda_devices,
                "fallback": self.fallback, "reason": self.reason}


def pick_device(num_gpus: float, *, logger: logging.Logger | None = None) -> DeviceChoice:
    """The device of a worker that asked the scheduler for `num_gpus` GPUs (fractions allowed).

    `num_gpus == 0`: the CPU. `num_gpus > 0` and torch sees a CUDA device: `cuda:0`, i.e. the first
    device of `CUDA_VISIBLE_DEVICES` (under Ray: the first GPU Ray assigned to this actor). `num_gpus > 0`
    and no CUDA device (CPU-only torch, no driver, or GPUs declared to Ray on a machine that has none):
    the CPU, with a warning naming what was asked and what was found.

    Args:
        num_gpus: the GPU share asked for.
        logger: where the choice is logged (default this module's logger): a fallback as a warning,
            any other choice at info level.
    """
    logger = logger or log
    ray_ids = _ray_gpu_ids()
    visible = os.environ.get(VISIBLE_DEVICES)
    cuda_devices = torch.cuda.device_count() if torch.cuda.is_available() else 0
    seen = f"Ray GPU ids {list(ray_ids)}, {VISIBLE_DEVICES}={visible!r}, torch sees {cuda_devices} CUDA device(s)"
    if num_gpus <= 0:
        choice = DeviceChoice(torch.device("cpu"), num_gpus, ray_ids, visible, cuda_devices, False,
                              "device cpu: federation.worker_resources.num_gpus is 0")
        logger.info("%s", choice.reason)
        return choice
    if cuda_devices > 0:
        name = torch.cuda.get_device_name(0)
        choice = DeviceChoice(torch.device("cuda", 0), num_gpus, ray_ids, visible, cuda_devices, False,
                              f"device cuda:0 ({name}) for num_gpus={num_gpus:g}; {seen}")
        logger.info("%s", choice.reason)
        return choice
    build = torch.version.cuda or "none (CPU-only build)"
    choice = DeviceChoice(torch.device("cpu"), num_gpus, ray_ids, visible, 0, True,
                          f"asked for num_gpus={num_gpus:g} but no CUDA device is usable ({seen}; torch "
                          f"{torch.__version__}, CUDA {build}): running on the CPU")
    logger.warning("%s", choice.reason)
    return choice


def _ray_gpu_ids() -> tuple[str, ...]:
    """`ray.get_gpu_ids()` when this process runs inside Ray (never imports Ray itself)."""
    ray = sys.modules.get("ray")
    if ray is None or not getattr(ray, "is_initialized", lambda: False)():
        return ()
    try:
        return tuple(str(gpu) for gpu in ray.get_gpu_ids())
    except Exception:  # noqa: BLE001 - a driver (not a worker) may not answer: no assignment then
        return ()


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter (CPU for a model without parameters)."""
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


def check_precision(precision: str) -> str:
    """`precision` itself, or ValueError naming the allowed values."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    return precision


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """The context `precision` asks for on `device`: nothing for "fp32", bf16 autocast for "bf16".

    Raises:
        ValueError: an unknown precision.
    """
    if check_precision(precision) == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


@contextlib.contextmanager
def full_precision(device: torch.device) -> Iterator[None]:
    """Autocast switched off on `device` for the block (matrix products run in their inputs' dtype)."""
    with torch.autocast(device_type=device.type, enabled=False):
        yield


def to_device(tensors: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    """Every tensor of a batch on `device` (non-blocking from pinned memory; a no-op where it already is)."""
    return {key: value.to(device, non_blocking=True) for key, value in tensors.items()}
