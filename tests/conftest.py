"""Test-wide settings: one torch thread (small nets on a loaded 2-core machine run far faster that way)."""

import torch

torch.set_num_threads(1)
