"""Seeds derived from (experiment seed, round_idx, client index, purpose): the only place seeds are made.

Every generator in a run is a function of the experiment seed and the coordinates of its use, so the
same config and seed give the same run whichever actor serves which client and in whatever order.
"""

from __future__ import annotations

import numpy as np
import torch

# Purposes keep streams for the same (round, client) independent.
SELECT, SCORE, TRAIN = 1, 2, 3


def derive_seed(seed: int, *coordinates: int) -> int:
    """A 63-bit seed from `seed` and integer coordinates (e.g. round_idx, client index, purpose)."""
    state = np.random.SeedSequence([seed, *coordinates]).generate_state(2, dtype=np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1]))


def numpy_rng(seed: int, *coordinates: int) -> np.random.Generator:
    return np.random.default_rng(derive_seed(seed, *coordinates))


def torch_generator(seed: int) -> torch.Generator:
    generator = torch.Generator()
    generator.manual_seed(seed)
    return generator
