"""The example third-party family (examples/corridor_family) plugs into ued without touching the library:
it keeps the LevelFamily contract (`ued.testing.check_family`), its env passes gymnasium's checker, its
tokens round-trip, DR trains a student on it through the runner (and the student learns), PAIRED's
adversary writes its levels, the CLI sees it, and `ued eval` of a corridor run plays its held-out suite."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from gymnasium.utils.env_checker import check_env

from ued import levels
from ued.errors import UsageError
from ued.levels import make_family, register_family
from ued.models import make_student

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "corridor_family"


def _import_example():
    """Import the example module from its folder, as it is, without pip-installing it."""
    sys.path.insert(0, str(EXAMPLE))
    try:
        return importlib.import_module("corridor_family")
    finally:
        sys.path.remove(str(EXAMPLE))


cf = _import_example()


@pytest.fixture
def corridor(monkeypatch) -> cf.CorridorFamily:
    """The corridor family registered by the decorator in a private copy of the registry."""
    monkeypatch.setattr(levels, "FAMILIES", dict(levels.FAMILIES))
    register_family(cf.CorridorFamily)
    return make_family("corridor")


def test_registered_by_the_decorator_with_options(corridor):
    assert isinstance(corridor, cf.CorridorFamily)
    assert (corridor.vocab_size, corridor.max_tokens) == (16, 8)
    small = make_family("corridor", length=8, max_hurdles=2)
    assert (small.vocab_size, small.max_tokens) == (8, 4)
    with pytest.raises(UsageError, match="max_hurdles must be in 0..6"):
        make_family("corridor", length=8, max_hurdles=7)
    with pytest.raises(UsageError, match="its options: length, max_hurdles"):
        make_family("corridor", width=8)


def test_the_example_keeps_the_level_family_contract(corridor):
    from ued.testing import check_family

    report = check_family(corridor)  # raises, listing the problems, if a rule is broken
    assert report.ok and len(report.passed) == 13


def test_the_env_passes_gymnasiums_checker(corridor):
    rng = np.random.default_rng(0)
    for _ in range(3):
        env = corridor.make_env(corridor.sample(rng), render_mode="rgb_array")
        check_env(env, skip_render_check=True)
        env.reset(seed=0)
        assert env.render().shape == (16, 16 * 16, 3)


def test_the_game_steps_jumps_and_pays_for_speed():
    level = cf.CorridorLevel.from_text("S.#..G")
    env = cf.CorridorEnv(level)
    obs, _ = env.reset(seed=0)
    np.testing.assert_array_equal(obs, [[0, 0, 1, 0, 0, 0], [1, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 1]])
    right, jump_right, left = 1, 3, 0
    assert env.step(left)[0][1, 0] == 1  # off the corridor: stays
    assert env.step(right)[0][1, 1] == 1
    assert env.step(right)[0][1, 1] == 1  # onto the hurdle: blocked
    assert env.step(jump_right)[0][1, 3] == 1  # over it
    _, reward, terminated, truncated, _ = env.step(jump_right)
    assert terminated and not truncated
    assert reward == pytest.approx(1 - 0.9 * 5 / env.max_steps)
    env.reset(options={"level": cf.CorridorLevel.from_text("G.S##.")})
    for _ in range(env.max_steps - 1):
        assert env.step(right)[1:4] == (0.0, False, False)
    assert env.step(right)[1:4] == (0.0, False, True)


def test_tokens_round_trip_and_every_token_sequence_decodes(corridor):
    rng = np.random.default_rng(1)
    for _ in range(200):
        level = corridor.sample(rng)
        assert corridor.is_valid(level)
        tokens = corridor.encode(level)
        assert tokens.shape == (corridor.max_tokens,) and tokens.dtype == np.int64
        assert corridor.decode(tokens) == level
        assert corridor.from_text(corridor.to_text(level)) == level
        raw = rng.integers(0, corridor.vocab_size, size=rng.integers(0, corridor.max_tokens + 1))
        decoded = corridor.decode(raw)  # never raises on in-range tokens
        assert corridor.is_valid(corridor.repair(decoded))
        np.testing.assert_array_equal(
            corridor.encode(corridor.decode(corridor.encode(decoded))), corridor.encode(decoded)
        )
    with pytest.raises(ValueError):
        corridor.decode([0] * (corridor.max_tokens + 1))


def test_repair_removes_only_blocking_hurdles(corridor):
    blocked = cf.CorridorLevel.from_text("S.##.#..G....##.")
    assert not corridor.is_valid(blocked)
    repaired = corridor.repair(blocked)
    assert corridor.is_valid(repaired)
    assert repaired.to_text() == "S.#..#..G....##."  # one hurdle of the pair gone; those past the goal kept
    assert corridor.repair(repaired) == repaired
    with pytest.raises(UsageError, match="exactly one S and one G"):
        corridor.from_text("S..S..G")


def test_dr_trains_a_student_through_the_runner_and_it_learns(corridor, tmp_path):
    from ued.config import TrainConfig
    from ued.evaluation import evaluate, load_student
    from ued.runner import train

    torch.set_num_threads(1)
    run_dir = tmp_path / "run"
    summary = train(
        TrainConfig(
            env="corridor", teacher="dr", total_steps=24_576, run_dir=str(run_dir), image_interval=10
        ),
        progress=False,
    )
    assert summary["steps"] == 24_576 and summary["updates"] == 24
    assert (run_dir / "config.json").is_file() and (run_dir / "checkpoint.pt").is_file()
    assert list(run_dir.glob("events.out.tfevents.*"))

    policy, family, _ = load_student(run_dir)
    rng = np.random.default_rng(123)
    held_out = [(f"corridor{i}", family.sample(rng)) for i in range(20)]
    trained = np.mean([r.mean_return for r in evaluate(policy, family, held_out, episodes=5)])
    untrained = np.mean([r.mean_return for r in evaluate(make_student(family), family, held_out, episodes=5)])
    assert trained > untrained + 0.15, (trained, untrained)

    # hand-written levels, as `ued eval RUN --levels DIR` reads them
    (tmp_path / "levels").mkdir()
    (tmp_path / "levels" / "jumpy.txt").write_text("S.#.#.#.#.#....G\n")
    (rows,) = [evaluate(policy, family, family.load_levels(tmp_path / "levels"), episodes=4)]
    assert [r.name for r in rows] == ["jumpy"] and 0.0 <= rows[0].mean_return <= 1.0


def test_paired_writes_corridors(corridor):
    from ued.editor import write_levels
    from ued.teachers.paired import PAIRED, AdversaryPolicy, PAIREDConfig

    torch.manual_seed(0)
    adversary = AdversaryPolicy.for_family(corridor, conv_channels=4, hidden_size=16)
    written = write_levels(corridor, adversary, 6, rng=np.random.default_rng(0))
    assert written.tokens.shape == (6, corridor.max_tokens)
    assert all(isinstance(lvl, cf.CorridorLevel) for lvl in written.levels)
    assert written.levels == [corridor.decode(t) for t in written.tokens]  # played as written

    teacher = PAIRED(corridor, PAIREDConfig(conv_channels=4, hidden_size=16, repair_levels=True), seed=0)
    proposed = teacher.propose(4).levels
    assert len(proposed) == 4 and all(corridor.is_valid(lvl) for lvl in proposed)  # the ued option


def test_a_tiny_paired_run(corridor, tmp_path):
    from ued.config import TrainConfig
    from ued.runner import train

    torch.set_num_threads(1)
    config = TrainConfig(
        env="corridor",
        teacher="paired",
        teacher_options={"conv_channels": 4, "hidden_size": 16},
        total_steps=2 * 4 * 16,
        num_envs=4,
        num_steps=16,
        run_dir=str(tmp_path / "paired"),
        image_interval=1,
    )
    summary = train(config, progress=False)
    assert summary["updates"] == 2 and (tmp_path / "paired" / "checkpoint.pt").is_file()


def test_the_cli_lists_and_renders_it(corridor, tmp_path):
    from ued.cli.main import cli

    result = CliRunner().invoke(cli, ["envs"])
    assert result.exit_code == 0, result.output
    assert any(line.split()[:3] == ["corridor", "16", "8"] for line in result.output.splitlines())
    result = CliRunner().invoke(cli, ["render", "--env", "corridor", "--sample", "2", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert len(list(tmp_path.glob("*.png"))) == 2


def test_ued_eval_of_a_corridor_run_plays_corridor_transfer_by_default(corridor, tmp_path):
    from ued.cli.main import cli
    from ued.config import TrainConfig
    from ued.runner import train

    torch.set_num_threads(1)
    run_dir = tmp_path / "run"
    config = TrainConfig(
        env="corridor", teacher="dr", total_steps=64, num_envs=4, num_steps=16, run_dir=str(run_dir)
    )
    train(config, progress=False)
    result = CliRunner().invoke(cli, ["eval", str(run_dir), "--episodes", "2"])
    assert result.exit_code == 0, result.output
    assert f"protagonist of {run_dir} on corridor-transfer (2 episodes per level" in result.output
    assert all(name in result.output for name in cf.TRANSFER_CORRIDORS)

    # level files the family says are invalid (blocked: two hurdles side by side) are named on stderr
    (tmp_path / "levels").mkdir()
    (tmp_path / "levels" / "open.txt").write_text("S..............G\n")
    (tmp_path / "levels" / "blocked.txt").write_text("S.##...........G\n")
    result = CliRunner().invoke(
        cli, ["eval", str(run_dir), "--levels", str(tmp_path / "levels"), "--episodes", "1"]
    )
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines()[0] == (
        "warning: 1 of 2 levels are not valid corridor levels (is_valid: e.g. unsolvable), played as written: "
        "blocked"
    )
    assert "warning" not in result.stdout and "blocked" in result.stdout  # still evaluated
