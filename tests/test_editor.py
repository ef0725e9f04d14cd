"""The PAIRED editor: the single-level gymnasium env and the batched `write_levels`, for every family."""

from __future__ import annotations

import importlib
import warnings

import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

from ued.editor import EditorEnv, finish_level, write_levels
from ued.errors import UsageError
from ued.levels import make_family
from ued.teachers.paired import AdversaryPolicy

torch.set_num_threads(1)

FAMILIES = ["maze", "carracing"]


def family(name: str):
    importlib.import_module(f"ued.environments.{name}")  # registers it (carracing may not be imported yet)
    return make_family(name)


def small_adversary(fam, seed: int = 0) -> AdversaryPolicy:
    torch.manual_seed(seed)
    return AdversaryPolicy.for_family(fam, conv_channels=4, hidden_size=16)


def test_a_decode_that_rejects_written_tokens_is_one_line():
    maze = family("maze")

    class Picky(type(maze)):
        def decode(self, tokens):
            if int(np.asarray(tokens)[0]) == 7:
                raise KeyError(7)
            return super().decode(tokens)

    picky = Picky(max_walls=2)
    with pytest.raises(
        UsageError, match=r"maze.decode failed on teacher-written tokens \[7, 1, 2, 3\] .*check-family"
    ):
        finish_level(picky, [7, 1, 2, 3])
    assert finish_level(picky, [8, 1, 2, 3])[1]


@pytest.mark.parametrize("name", FAMILIES)
def test_editor_env_passes_gymnasium_check_env(name):
    env = EditorEnv(family(name), render_mode="rgb_array")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*spec.*")  # the env is not created by gymnasium.make
        check_env(env)


def test_editor_env_episode_writes_a_level_with_zero_reward():
    fam = family("maze")
    env = EditorEnv(fam)
    obs, _ = env.reset(seed=3)
    assert obs["time_step"] == 0 and obs["image"].shape == fam.editor_view_shape
    assert env.observation_space.contains(obs)
    noise = obs["noise"].copy()
    tokens = [30 + i for i in range(fam.max_tokens - 2)] + [10, 20]
    for i, tok in enumerate(tokens):
        previous = obs["noise"]
        obs, reward, terminated, truncated, info = env.step(tok)
        assert reward == 0.0 and not truncated
        assert obs["time_step"] == i + 1
        assert not np.allclose(obs["noise"], previous)  # z is drawn anew at every step (dcd)
        assert terminated == (i == len(tokens) - 1)
    np.testing.assert_array_equal(info["tokens"], tokens)
    assert info["level"] == fam.decode(tokens) and info["valid_before_repair"]
    np.testing.assert_array_equal(obs["image"], fam.editor_view(tokens))
    with pytest.raises(RuntimeError, match="reset"):
        env.step(0)
    # another seed draws another noise vector; the same seed the same one
    other, _ = env.reset(seed=4)
    again, _ = EditorEnv(fam).reset(seed=3)
    assert not np.allclose(other["noise"], noise)
    np.testing.assert_array_equal(again["noise"], noise)


def test_finish_level_repairs_an_unsolvable_maze_only_when_asked():
    fam = family("maze")
    # goal in the top-left corner cell (1, 1), walled in by cells (2, 1) and (1, 2); start far away
    pad = [0] * (fam.max_walls - 2)  # walls on the goal's cell, removed when the goal is placed
    tokens = [1, 13, *pad, 0, 168]
    level, valid = finish_level(fam, tokens)
    assert not valid and level == fam.decode(tokens) and not fam.is_valid(level)  # dcd: played as written
    level, valid = finish_level(fam, tokens, repair=True)
    assert not valid and fam.is_valid(level)
    level, valid = finish_level(fam, [0] * fam.max_walls + [0, 168])
    assert valid and fam.is_valid(level)


@pytest.mark.parametrize("name", FAMILIES)
def test_write_levels_gives_playable_levels_and_consistent_rollouts(name):
    fam = family(name)
    policy = small_adversary(fam)
    n, T = 5, fam.max_tokens
    out = write_levels(
        fam, policy, n, rng=np.random.default_rng(0), generator=torch.Generator().manual_seed(0)
    )
    assert out.tokens.shape == (n, T) and out.tokens.dtype == np.int64
    assert ((out.tokens >= 0) & (out.tokens < fam.vocab_size)).all()
    assert len(out.levels) == n and out.levels == [fam.decode(t) for t in out.tokens]  # not repaired
    assert out.obs["image"].shape == (T, n, *fam.editor_view_shape)
    np.testing.assert_array_equal(out.obs["time_step"][:, 0].numpy(), np.arange(T))
    assert out.obs["noise"].shape == (T, n, 50)
    assert not torch.equal(out.obs["noise"][0], out.obs["noise"][-1])  # a new z at every step
    # the observation at step t shows exactly the tokens written before it
    t = T - 1
    np.testing.assert_array_equal(out.obs["image"][t, 2].numpy(), fam.editor_view(out.tokens[2, :t]))
    np.testing.assert_array_equal(out.actions.T.numpy(), out.tokens)
    for i in range(n):  # a level valid before repair is exactly the decoded tokens
        if out.valid_before_repair[i]:
            assert out.levels[i] == fam.decode(out.tokens[i])
    assert 0.0 <= out.valid_share <= 1.0 and out.num_repaired == n - out.valid_before_repair.sum()
    assert out.dones[0].eq(1).all() and out.dones[1:].eq(0).all()
    # PPO re-evaluates the stored rollout and must find the log-probs and values recorded while writing
    log_prob, entropy, value = policy.evaluate_sequence(out.obs, out.state0, out.dones, out.actions)
    torch.testing.assert_close(log_prob, out.log_probs, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(value, out.values, atol=1e-5, rtol=1e-5)
    assert (entropy > 0).all()


def test_write_levels_is_reproducible_and_noise_makes_levels_differ():
    fam = family("maze")
    policy = small_adversary(fam)

    def write(seed: int, deterministic: bool = False):
        return write_levels(
            fam,
            policy,
            4,
            rng=np.random.default_rng(seed),
            generator=torch.Generator().manual_seed(seed),
            deterministic=deterministic,
        )

    np.testing.assert_array_equal(write(1).tokens, write(1).tokens)
    assert not np.array_equal(write(1).tokens, write(2).tokens)
    greedy = write(1, deterministic=True)
    probs = torch.exp(greedy.log_probs)
    assert (probs > 1.0 / fam.vocab_size).all()  # argmax tokens are at least as likely as uniform


def test_write_levels_rejects_empty_batch():
    fam = family("maze")
    with pytest.raises(ValueError):
        write_levels(fam, small_adversary(fam), 0, rng=np.random.default_rng(0))
