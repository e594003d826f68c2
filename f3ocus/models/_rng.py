"""Scoped global-RNG seeding for the few places where transformers/peft draw from the global torch RNG.

Weight init (`PreTrainedModel.__init__`, peft's LoRA A init) and ViLT's patch sampling use the global
torch generator and take no `torch.Generator`. `isolated_rng(seed)` forks the global CPU RNG, seeds the
fork and restores the caller's state on exit, so these draws are reproducible and nothing outside the
block sees a changed global stream (house style: only `f3ocus.utils.seeding` owns run-level seeds).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


@contextlib.contextmanager
def isolated_rng(seed: int) -> Iterator[None]:
    """Run the block with the global torch RNG seeded to `seed`, then restore the previous state.

    Args:
        seed: seed for the forked global CPU generator (CUDA generators are forked too when present).
    """
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def draw_seed(generator: torch.Generator) -> int:
    """Draw a 62-bit seed from `generator` (to derive an `isolated_rng` seed from a caller's stream)."""
    return int(torch.randint(0, 2**62, (1,), generator=generator).item())
