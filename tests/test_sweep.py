"""`ued sweep`: a tiny teacher x seed grid runs on the local pool (and on Ray), fails fast on bad names,
reports failing cells without stopping the others, and resumes without redoing finished cells."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from ued.cli.main import cli
from ued.errors import UsageError
from ued.sweep import DONE_MARKER, MANIFEST, SweepConfig, finished_runs, run_sweep

torch.set_num_threads(1)

#: tiny budgets: 2 envs x 16 steps per update, 4 updates per run
TINY = {"num_envs": 2, "num_steps": 16, "checkpoint_interval": 1, "image_interval": 2}
TOTAL = 128


def tiny_config(out: Path, **kw) -> SweepConfig:
    settings = {
        "teachers": ["dr", "plr"],
        "out": str(out),
        "env": "maze",
        "seeds": 2,
        "total_steps": TOTAL,
        "max_workers": 2,
        "overrides": dict(TINY),
    }
    settings.update(kw)
    return SweepConfig(**settings)


def dr_cell_kwargs(run_dir: Path) -> dict:
    """`run_cell`'s training settings of a tiny DR cell (seed 0) in `run_dir`."""
    return {"env": "maze", "teacher": "dr", "seed": 0, "total_steps": TOTAL, "run_dir": str(run_dir), **TINY}


def _summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


def test_unknown_teacher_fails_before_any_run(tmp_path):
    out = tmp_path / "sweep"
    with pytest.raises(UsageError, match="unknown teacher.*'nope'"):
        run_sweep(tiny_config(out, teachers=["dr", "nope"]))
    assert not out.exists()
    result = CliRunner().invoke(
        cli, ["sweep", "--teachers", "dr,nope", "--total-steps", "64", "--out", str(out)]
    )
    assert result.exit_code == 2
    assert "unknown teacher" in result.output and "Traceback" not in result.output
    assert not out.exists()


@pytest.mark.parametrize(
    "kw, message",
    [
        ({"seeds": 0}, "--seeds"),
        ({"total_steps": 0}, "total-steps"),
        ({"backend": "slurm"}, "unknown backend"),
        ({"env": "nowhere"}, "unknown environment"),
        ({"overrides": {"num_envz": 2}}, "num_envz"),
        ({"teachers": ["dr", "dr"]}, "twice"),
        ({"overrides": {"seed": 3}}, "seed cannot be a per-run setting"),
        ({"overrides": {"num_envs": 0}}, "num_envs must be at least 1"),
        ({"teachers": ["plr"], "overrides": {"teacher_options": {"no_such_option": 1}}}, "no_such_option"),
        ({"overrides": {"teacher_options": {"no_such_option": 1}}}, "'dr' takes no options"),
    ],
)
def test_bad_settings_are_usage_errors(tmp_path, kw, message):
    with pytest.raises(UsageError, match=message):
        run_sweep(tiny_config(tmp_path / "s", **kw))
    assert not (tmp_path / "s").exists()


def test_local_sweep_resumes_killed_cells_and_skips_finished_ones(tmp_path):
    from ued.config import TrainConfig
    from ued.runner import train

    out = tmp_path / "sweep"
    # dr/seed1 was killed half-way: a checkpoint at half the budget and no finished marker
    killed = out / "dr" / "seed1"
    train(
        TrainConfig(env="maze", teacher="dr", seed=1, total_steps=TOTAL // 2, run_dir=str(killed), **TINY),
        progress=False,
    )
    assert _summary(killed)["steps"] == TOTAL // 2 and not (killed / DONE_MARKER).exists()

    seen = []
    result = run_sweep(
        tiny_config(out), on_cell_done=lambda r, i, n: seen.append((r.cell.name, r.status, i, n))
    )
    assert result.ok, [(r.cell.name, r.error) for r in result.failed]
    assert sorted(name for name, *_ in seen) == ["dr/seed0", "dr/seed1", "plr/seed0", "plr/seed1"]
    assert [i for *_, i, _ in seen] == [1, 2, 3, 4] and {n for *_, n in seen} == {4}
    by_name = {r.cell.name: r for r in result.results}
    assert by_name["dr/seed1"].resumed and not by_name["dr/seed0"].resumed
    for teacher in ("dr", "plr"):
        for seed in (0, 1):
            run_dir = out / teacher / f"seed{seed}"
            assert (run_dir / DONE_MARKER).is_file() and (run_dir / "checkpoint.pt").is_file()
            assert _summary(run_dir)["steps"] == TOTAL  # the killed run went on to the full budget
            assert json.loads((run_dir / "config.json").read_text())["train"]["teacher"] == teacher
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["config"]["total_steps"] == TOTAL
    assert {(c["teacher"], c["seed"]) for c in manifest["cells"]} == {
        (t, s) for t in ("dr", "plr") for s in (0, 1)
    }
    assert len(finished_runs(out)) == 4

    # run again: nothing is retrained or rewritten
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("*/seed*/*") if p.is_file()}
    again = run_sweep(tiny_config(out))
    assert [r.status for r in again.results] == ["skipped"] * 4
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps

    # a resumed sweep may not change what a cell means
    with pytest.raises(UsageError, match="total_steps"):
        run_sweep(tiny_config(out, total_steps=2 * TOTAL))


def test_failing_cell_is_reported_and_the_others_finish(tmp_path):
    out = tmp_path / "sweep"
    (out / "plr").mkdir(parents=True)
    (out / "plr" / "seed0").write_text("a file where the run dir should be")
    args = [
        "sweep",
        "--teachers",
        "dr,plr",
        "--seeds",
        "1",
        "--total-steps",
        "32",
        "--num-envs",
        "2",
        "--num-steps",
        "16",
        "--workers",
        "2",
        "--out",
        str(out),
    ]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1, result.output
    assert "plr/seed0: FAILED" in result.output
    assert "dr/seed0: finished" in result.output
    assert "1 of 2 runs failed" in result.output
    assert (out / "dr" / "seed0" / DONE_MARKER).is_file()
    assert (out / "plr" / "seed0").read_text() == "a file where the run dir should be"  # not destroyed


def _ray_or_skip():
    try:
        import ray
    except ImportError:
        if os.environ.get("UED_REQUIRE_RAY") == "1":
            pytest.fail("UED_REQUIRE_RAY=1 but ray is not installed: pip install 'ued[ray]'")
        pytest.skip("ray is not installed (pip install 'ued[ray]'); CI sets UED_REQUIRE_RAY=1")
    return ray


def test_ray_backend_runs_the_same_sweep(tmp_path):
    ray = _ray_or_skip()
    out = tmp_path / "sweep"
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": {"OMP_NUM_THREADS": "1"}},
    )
    try:
        result = run_sweep(tiny_config(out, backend="ray", seeds=[0, 3], total_steps=64))
        assert ray.is_initialized()  # a Ray the caller started is left to the caller
    finally:
        ray.shutdown()
    assert result.ok, [(r.cell.name, r.error) for r in result.failed]
    assert sorted(r.cell.name for r in result.results) == ["dr/seed0", "dr/seed3", "plr/seed0", "plr/seed3"]
    for r in result.results:
        assert r.status == "done"
        assert _summary(Path(r.cell.run_dir))["steps"] == 64


def test_a_cell_killed_before_its_marker_is_finished_without_training_again(tmp_path):
    from ued.config import TrainConfig
    from ued.runner import train
    from ued.sweep import cell_dir, run_cell

    out = tmp_path / "sweep"
    run_dir = cell_dir(out, "dr", 0)
    train(
        TrainConfig(env="maze", teacher="dr", seed=0, total_steps=TOTAL, run_dir=str(run_dir), **TINY),
        progress=False,
    )
    summary = (run_dir / "summary.json").read_bytes()
    checkpoint = (run_dir / "checkpoint.pt").read_bytes()
    kwargs = dr_cell_kwargs(run_dir)
    result = run_cell(kwargs)
    assert result["status"] == "done", result
    assert (run_dir / DONE_MARKER).is_file()
    assert (run_dir / "summary.json").read_bytes() == summary  # not clobbered
    assert (run_dir / "checkpoint.pt").read_bytes() == checkpoint


def test_a_cell_that_reached_its_student_updates_is_finished_too(tmp_path):
    from ued.config import TrainConfig
    from ued.runner import train
    from ued.sweep import cell_dir, run_cell

    run_dir = cell_dir(tmp_path / "sweep", "dr", 0)
    kwargs = {**dr_cell_kwargs(run_dir), "total_steps": 10 * TOTAL, "student_updates": 2}
    train(TrainConfig(**kwargs), progress=False)  # stops at 2 updates, far below total_steps
    checkpoint = (run_dir / "checkpoint.pt").read_bytes()
    result = run_cell(kwargs)  # killed before its marker: finished, not resumed into an error
    assert result["status"] == "done", result
    assert (run_dir / "checkpoint.pt").read_bytes() == checkpoint


def test_one_sweep_per_folder_and_an_interrupted_sweep_starts_no_queued_cell(tmp_path):
    from ued.rundir import RunDirLock
    from ued.sweep import STOP_FILE, cell_dir, run_cell

    out = tmp_path / "sweep"
    with RunDirLock(out, what="sweeping"), pytest.raises(UsageError, match="in use by process"):
        run_sweep(tiny_config(out, teachers=["dr"], seeds=1))
    assert not (out / MANIFEST).exists()  # refused before anything was written
    # a cell that a worker holds when the sweep is interrupted reads the stop file and does not start
    (out / STOP_FILE).touch()
    run_dir = cell_dir(out, "dr", 0)
    kwargs = dr_cell_kwargs(run_dir)
    result = run_cell(kwargs, str(out / STOP_FILE))
    assert result["status"] == "failed" and "cancelled" in result["error"]
    assert not run_dir.exists()
