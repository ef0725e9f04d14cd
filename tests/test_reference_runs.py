"""Fixed-seed tiny runs of every teacher against a stored reference: a refactor that changes any number of a
run (weights, optimizer state, levels, logged scalars) fails here.

The reference (tests/data/reference_runs.json) holds fingerprints of each run: per checkpoint tensor its
float64 sum and sum of squares, every plain value of the checkpoint, and the TensorBoard scalars. A run on
the machine that wrote it reproduces them bit for bit; the comparison allows a relative 1e-4 so that
another CPU's float rounding passes. When a change of numbers is intended (a new published default),
regenerate it with `UED_WRITE_REFERENCE=1 python -m pytest tests/test_reference_runs.py` and say why in the
commit.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from ued.checkpoint import CHECKPOINT_NAME, load_checkpoint
from ued.config import TrainConfig
from ued.runner import train

REFERENCE = Path(__file__).parent / "data" / "reference_runs.json"
WRITE = os.environ.get("UED_WRITE_REFERENCE") == "1"

TINY_VAE = {"embed_dim": 8, "hidden": 8, "decoder_hidden": 8, "sequences": 64, "held_out": 8, "latent": 4}
CASES = {
    "dr": {},
    "paired": {"hidden_size": 32, "conv_channels": 8},
    "clutr": {"vae_source": "pretrain", "pretrain_steps": 3, "pretrain": TINY_VAE, "body_size": 16},
    "plr": {"buffer_size": 8, "min_fill": 0.1},
    "accel": {"buffer_size": 8, "min_fill": 0.1},
}
#: checkpoint entries that describe the run rather than its numbers
SKIP = ("config", "resolved")


def fingerprint(value, prefix: str, out: dict) -> None:
    """Flatten a checkpoint into {path: number or [sum, sum of squares]}."""
    if prefix.split("/")[1:2] and prefix.split("/")[1] in SKIP:
        return
    if isinstance(value, torch.Tensor):
        x = value.detach().double()
        out[prefix] = [float(x.sum()), float((x * x).sum())] if x.is_floating_point() else x.tolist()
    elif isinstance(value, dict):
        for k, v in value.items():
            fingerprint(v, f"{prefix}/{k}", out)
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            fingerprint(v, f"{prefix}/{i}", out)
    elif isinstance(value, (bool, int, float, str)) or value is None:
        out[prefix] = value


def run_case(teacher: str, run_dir: Path) -> dict:
    config = TrainConfig(
        teacher=teacher,
        teacher_options=CASES[teacher],
        total_steps=4 * 16 * 4,
        num_envs=4,
        num_steps=16,
        run_dir=str(run_dir),
        seed=3,
        checkpoint_interval=2,
        image_interval=0,
        threads=1,
    )
    train(config, progress=False)
    checkpoint: dict = {}
    fingerprint(load_checkpoint(run_dir / CHECKPOINT_NAME), "", checkpoint)
    events = EventAccumulator(str(run_dir))
    events.Reload()
    scalars = {
        tag: [[e.step, e.value] for e in events.Scalars(tag)]
        for tag in events.Tags()["scalars"]
        if not tag.startswith("perf/")
    }
    return {"checkpoint": checkpoint, "scalars": scalars}


def close(a, b) -> bool:
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(close(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and isinstance(b, float):
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return math.isclose(a, b, rel_tol=1e-4, abs_tol=1e-6)
    return a == b


@pytest.fixture(scope="module")
def reference() -> dict:
    if WRITE:
        return {}
    return json.loads(REFERENCE.read_text())


@pytest.mark.parametrize("teacher", sorted(CASES))
def test_run_matches_the_stored_reference(teacher, reference, tmp_path):
    got = run_case(teacher, tmp_path / teacher)
    got = json.loads(json.dumps(got))  # the same types as the stored file (tuples -> lists, ...)
    if WRITE:
        data = json.loads(REFERENCE.read_text()) if REFERENCE.is_file() else {}
        data[teacher] = got
        REFERENCE.parent.mkdir(exist_ok=True)
        REFERENCE.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
        return
    want = reference[teacher]
    for part in ("checkpoint", "scalars"):
        missing = sorted(set(want[part]) ^ set(got[part]))
        assert not missing, f"{teacher} {part}: entries added or removed: {missing[:10]}"
        differ = [k for k in want[part] if not close(want[part][k], got[part][k])]
        assert not differ, f"{teacher} {part}: numbers changed at {differ[:10]}"
