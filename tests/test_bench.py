"""`ued bench` runs end to end on tiny settings and reports well-formed numbers (never timed here)."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from ued.bench import bench_train
from ued.cli.main import cli


def test_env_benchmark_writes_both_backends(tmp_path) -> None:
    out = tmp_path / "bench.json"
    result = CliRunner().invoke(
        cli, ["bench", "--no-train", "--num-envs", "3", "--steps", "4", "--repeats", "1", "--json", str(out)]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    rows = {(r["backend"], r["num_envs"]) for r in data["env_speed"]}
    assert rows == {("default", 3), ("gym", 3)}
    assert all(r["steps_per_s"] > 0 for r in data["env_speed"])
    assert "ratio default/gym at 3 envs" in result.output


def test_training_benchmark_profiles_the_runner() -> None:
    row = bench_train("maze", "dr", "default", updates=3, num_envs=2, num_steps=8)
    assert row["steps_per_s"] > 0 and row["updates"] == 3
    profile = row["profile"]
    assert {"rollout inference", "env step", "PPO update", "teacher propose", "other"} <= set(profile)
    assert all(v >= 0 for v in profile.values())
    assert sum(profile.values()) == pytest.approx(1.0, abs=0.05)


def test_bad_options_are_usage_errors() -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["bench", "--no-train", "--steps", "0"])
    assert result.exit_code == 2 and "error:" in result.output
    if not torch.cuda.is_available():
        result = runner.invoke(cli, ["bench", "--device", "cuda"])
        assert result.exit_code == 2 and "CUDA" in result.output


def test_section_timer_counts_inner_sections_apart_and_nested_sections_once(monkeypatch) -> None:
    from ued import bench

    clock = [0.0]
    monkeypatch.setattr(bench.time, "perf_counter", lambda: clock[0])
    timer = bench.SectionTimer(torch.device("cpu"))

    def work(seconds: float):
        def run() -> None:
            clock[0] += seconds

        return run

    render = timer.wrap(work(2.0), "rendering", inner=True)
    forward = timer.wrap(work(0.5), "inference")  # an outer-only section: inside another, it is not split out

    def env_step() -> None:
        clock[0] += 1.0
        render()
        forward()
        timer.wrap(work(3.0), "rendering", inner=True)()  # nested in its own section: counted once

    timer.wrap(env_step, "env step")()
    render()  # outside every section: a section of its own
    assert timer.seconds == {"env step": 1.5, "rendering": 7.0}
    assert timer.open == []


def test_profiled_times_what_a_vector_env_declares(monkeypatch) -> None:
    from ued.bench import SectionTimer, profiled
    from ued.environments.fast_carracing import BatchedCarRacingEnv

    assert set(BatchedCarRacingEnv.profile_sections) == {"_render", "_coarse_green"}
    original = BatchedCarRacingEnv.__dict__["_render"]
    with profiled(SectionTimer(torch.device("cpu"))):
        assert BatchedCarRacingEnv.__dict__["_render"].__wrapped__ is original
    assert BatchedCarRacingEnv.__dict__["_render"] is original
