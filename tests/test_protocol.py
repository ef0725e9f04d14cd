"""ued's defaults are the published settings: each pinned to its source (docs/protocol.md has the table).

A test here fails when a default changes; change it only together with docs/protocol.md and a reason.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import torch

from ued.cli.train import read_config_file
from ued.config import (
    ACCELConfig,
    CLUTRConfig,
    PAIREDConfig,
    PLRConfig,
    PPOConfig,
    TrainConfig,
    VAEConfig,
    config_from_dict,
    preset_names,
    preset_path,
)
from ued.levels import make_family
from ued.run import ppo_config_for, resolved_settings, teacher_config_for, validate
from ued.teachers import teacher_class

PROTOCOL = Path(__file__).resolve().parents[1] / "docs" / "protocol.md"


def test_every_teacher_and_student_setting_is_in_the_protocol_table():
    text = PROTOCOL.read_text(encoding="utf-8")
    for cls in (PPOConfig, PAIREDConfig, CLUTRConfig, VAEConfig, PLRConfig, ACCELConfig):
        missing = [f.name for f in dataclasses.fields(cls) if f"`{f.name}`" not in text]
        assert not missing, f"{cls.__name__} fields missing from docs/protocol.md: {missing}"
    for name in preset_names():
        assert f"`{name}`" in text, f"preset {name} is not in docs/protocol.md"


def test_maze_student_ppo_is_dcds():
    """dcd train_scripts/grid_configs/minigrid/*/*.json and arguments.py."""
    ppo = make_family("maze").default_ppo()
    assert (ppo.num_envs, ppo.num_steps, ppo.lr, ppo.gamma, ppo.gae_lambda) == (32, 256, 1e-4, 0.995, 0.95)
    assert (ppo.epochs, ppo.num_minibatches, ppo.clip, ppo.value_coef, ppo.max_grad_norm) == (
        5,
        1,
        0.2,
        0.5,
        0.5,
    )
    assert (ppo.entropy_coef, ppo.eps, ppo.value_loss, ppo.normalize_returns) == (0.0, 1e-5, "clipped", False)
    assert (
        ppo.bootstrap_rollout_end is False
    )  # dcd forces a done at the last rollout step (adversarial_runner.py)


def test_carracing_student_ppo_is_dcds():
    """dcd train_scripts/grid_configs/car_racing/cr_*.json: normalize_returns, clip_value_loss false."""
    import ued.environments  # noqa: F401

    ppo = make_family("carracing").default_ppo()
    assert (ppo.num_envs, ppo.num_steps, ppo.lr, ppo.gamma, ppo.gae_lambda) == (16, 125, 3e-4, 0.99, 0.9)
    assert (ppo.epochs, ppo.num_minibatches, ppo.entropy_coef) == (8, 4, 0.0)
    assert ppo.value_loss == "smooth_l1" and ppo.normalize_returns


def test_carracing_family_track_rules_are_dcds():
    """dcd car_racing_bezier.py: a lap needs every tile; F1 centerlines are not thinned; the frames' camera
    is `CarRacingBezier.render`'s with `animate_zoom=False` (CarRacingBezier and the adversarial env)."""
    import ued.environments  # noqa: F401

    family = make_family("carracing")
    assert family.options == {
        "max_episode_steps": 1000,
        "thin_centerlines": False,
        "lap_complete_percent": 1.0,
        "camera": "dcd",
    }


def test_maze_family_is_dcds_default_env():
    """dcd arguments.py env_name MultiGrid-GoalLastAdversarial-v0 (n_clutter 50, goal last)."""
    family = make_family("maze")
    assert family.options == {"max_walls": 50, "wall_budget": "fixed"} and family.max_tokens == 52


def test_teacher_defaults_are_published():
    p = PAIREDConfig()  # dcd mg_25b_paired.json, util/make_agent.py
    assert (p.ppo.entropy_coef, p.noise_dim, p.hidden_size, p.conv_channels, p.head_sizes) == (
        0.0,
        50,
        256,
        (128,),
        (32,),
    )
    assert not p.repair_levels and not p.normalize_reward
    assert p.actor_gains == (math.sqrt(2.0), 0.01)  # dcd common.py init_tanh_, distributions.Categorical
    # dcd multigrid_models.py flattens the adversary's conv output channel-major; ued reads it position-major,
    # the same network up to the order of the next layer's columns (docs/protocol.md, deviation 14)
    from ued.teachers.paired import CONV_FEATURES

    assert CONV_FEATURES == "position-major"
    c = CLUTRConfig()  # CLUTR models/multigrid_models.py, scripts/train_minigrid50_clutr.sh
    assert (c.noise_dim, c.body_size, c.ppo.entropy_coef, c.ppo.lr, c.ppo.epochs) == (50, 10, 0.0, 1e-4, 5)
    assert not c.repair_levels and c.latent_range == "vae"  # a documented ued fix; "unit" is the reference
    r = PLRConfig()  # dcd mg_60b_uni_robust_plr.json
    assert (r.replay_prob, r.min_fill, r.score, r.prioritization, r.temperature) == (
        0.5,
        0.5,
        "pvl",
        "rank",
        0.3,
    )
    assert (r.staleness_coef, r.staleness_temperature, r.buffer_size, r.robust) == (0.3, 1.0, 4000, True)
    a = ACCELConfig()  # dcd mg_60b_uni_accel_empty.json, adversarial_runner.py (base_levels easy)
    assert (a.replay_prob, a.num_edits, a.start_easy, a.parents, a.num_parents) == (0.8, 5, True, "dcd", 4)


def test_carracing_teacher_defaults_are_published():
    """dcd cr_robust_plr.json and cr_paired.json; CLUTR scripts/train_carracing_clutr.sh."""
    import ued.environments  # noqa: F401

    family = make_family("carracing")
    plr = teacher_config_for(family, TrainConfig(env="carracing", teacher="plr"))
    assert (plr.buffer_size, plr.prioritization, plr.temperature, plr.staleness_coef) == (
        8000,
        "power",
        1.0,
        0.7,
    )
    paired = teacher_config_for(family, TrainConfig(env="carracing", teacher="paired"))
    assert (paired.noise_dim, paired.hidden_size, paired.conv_channels, paired.kernel_size) == (
        4,
        0,
        (8, 16),
        2,
    )
    assert (paired.ppo.lr, paired.ppo.epochs, paired.ppo.num_minibatches) == (
        3e-4,
        8,
        4,
    ) and paired.normalize_reward
    # car_racing_models.py CarRacingBezierAdversaryEnvNetwork: init_ (orthogonal, gain 1) on both actor layers
    assert paired.actor_gains == (1.0, 1.0) and paired.head_sizes == (256,) and paired.critic_sizes == ()
    teacher = teacher_class("paired")(family, paired, seed=0)
    hidden, out = teacher.adversary.actor[0], teacher.adversary.actor[2]
    for layer in (hidden, out):  # orthogonal with gain 1: singular values all 1
        assert torch.linalg.svdvals(layer.weight).sub(1).abs().max() < 1e-4
    clutr = teacher_config_for(family, TrainConfig(env="carracing", teacher="clutr"))
    assert (clutr.noise_dim, clutr.body_size, clutr.ppo.lr, clutr.normalize_reward) == (4, 8, 3e-4, True)


_60B = {"max_walls": 60, "updates": 20_000, "steps": 400_000_000}
PRESETS = {
    "dcd-mg25b-dr": {"max_walls": 25, "teacher": "dr", "entropy": 0.01, "steps": 250_000_000},
    "dcd-mg25b-paired": {"max_walls": 25, "teacher": "paired", "entropy": 0.0, "steps": 250_000_000},
    "dcd-mg25b-plr": {
        "max_walls": 25,
        "teacher": "plr",
        "entropy": 0.01,
        "robust": False,
        "temperature": 0.1,
    },
    "dcd-mg25b-robust-plr": {"max_walls": 25, "teacher": "plr", "entropy": 0.01, "robust": True},
    # dcd results/minigrid_ood/mg_60_blocks*_20k_updates.csv: 20,000 student updates (checkpoint_basis
    # student_grad_updates), reached within the step cap by all three (Robust PLR at ~330M steps)
    "dcd-mg60b-uni-dr": {**_60B, "budget": "uniform", "teacher": "dr", "entropy": 0.0},
    "dcd-mg60b-uni-robust-plr": {**_60B, "budget": "uniform", "teacher": "plr", "temperature": 0.3},
    "dcd-mg60b-uni-accel-empty": {**_60B, "teacher": "accel", "entropy": 0.0},
    "clutr-maze": {"max_walls": 50, "teacher": "clutr", "steps": 500_000_000},
    "dcd-cr-dr": {"env": "carracing", "teacher": "dr", "steps": 5_500_000},
    "dcd-cr-paired": {"env": "carracing", "teacher": "paired"},
    "dcd-cr-plr": {"env": "carracing", "teacher": "plr", "robust": False},
    "dcd-cr-robust-plr": {"env": "carracing", "teacher": "plr", "robust": True},
    "clutr-carracing": {"env": "carracing", "teacher": "clutr", "steps": 2_000_000},
}


def test_every_preset_is_pinned():
    assert sorted([*PRESETS, "quickstart"]) == preset_names()


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_preset_resolves_to_the_published_config(name):
    want = PRESETS[name]
    config = config_from_dict(read_config_file(preset_path(name)), where=name)
    validate(config)
    family = make_family(config.env, **config.env_options)
    resolved = resolved_settings(config, family)
    ppo = ppo_config_for(family, config)
    teacher = teacher_config_for(family, config)
    assert config.env == want.get("env", "maze") and config.teacher == want["teacher"]
    if "max_walls" in want:
        assert resolved["env_options"]["max_walls"] == want["max_walls"]
        assert resolved["env_options"]["wall_budget"] == want.get(
            "budget", resolved["env_options"]["wall_budget"]
        )
    if "entropy" in want:
        assert ppo.entropy_coef == want["entropy"]
    if "steps" in want:
        assert config.total_steps == want["steps"]
    assert config.student_updates == want.get("updates")
    if "robust" in want:
        assert teacher.robust is want["robust"]
    if "temperature" in want:
        assert teacher.temperature == want["temperature"]


def test_held_out_episodes_per_level_are_dcds():
    """dcd eval.py --num_episodes 100, for mazes and the F1 circuits alike."""
    assert make_family("maze").eval_episodes == 100
    assert make_family("carracing").eval_episodes == 100
