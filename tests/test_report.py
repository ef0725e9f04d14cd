"""Report statistics (IQM, stratified bootstrap) on hand-made data, and `ued report` on a tiny sweep."""

from __future__ import annotations

import csv
import json
import os
import time

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from ued.cli.main import cli
from ued.errors import UsageError
from ued.report import bootstrap_ci, ema, iqm, make_report, mean_band, mean_score, stratified_bootstrap
from ued.sweep import DONE_MARKER


def test_iqm_drops_the_outer_quartiles():
    assert iqm([1, 2, 3, 4, 5, 6, 7, 8]) == pytest.approx(4.5)  # mean of 3, 4, 5, 6
    assert iqm([0, 0, 1, 1, 1, 1, 100, 100]) == pytest.approx(1.0)  # outliers on both ends ignored
    assert iqm([5.0]) == 5.0
    # 10 scores: int(2.5) = 2 cut from each end, like scipy.stats.trim_mean(x, 0.25)
    assert iqm(np.arange(10.0)) == pytest.approx(np.arange(2.0, 8.0).mean())
    # unordered input, pooled over a matrix
    assert iqm(np.array([[8, 1], [3, 6], [2, 7], [5, 4]])) == pytest.approx(4.5)


def test_iqm_along_axes():
    x = np.array([[[1, 2], [3, 4]], [[10, 20], [30, 40]]], dtype=float)  # [2, 2, 2]
    out = iqm(x, axis=(1, 2))
    assert out.shape == (2,)
    assert out == pytest.approx([2.5, 25.0])
    assert iqm(np.array([[1, 100], [2, 200], [3, 300], [4, 400]]), axis=0) == pytest.approx([2.5, 250])
    with pytest.raises(ValueError):
        iqm([])


def test_bootstrap_of_constant_scores_is_degenerate():
    rng = np.random.default_rng(0)
    point, low, high = bootstrap_ci(np.full((3, 4), 0.7), iqm, rng, reps=200)
    assert point == low == high == pytest.approx(0.7)


def test_bootstrap_resamples_runs_within_each_task():
    # run 0 solves task 0 only, run 1 task 1 only: resampling whole runs always gives mean 0.5, but the
    # stratified bootstrap resamples each task's column on its own, so 0 and 1 both appear
    scores = np.array([[0.0, 1.0], [1.0, 0.0]])
    reps = stratified_bootstrap(scores, mean_score, np.random.default_rng(1), reps=400)
    assert reps.shape == (400,)
    assert reps.min() == 0.0 and reps.max() == 1.0
    assert set(np.round(reps, 6)) <= {0.0, 0.25, 0.5, 0.75, 1.0}


def test_bootstrap_ci_covers_the_mean_with_the_right_width():
    rng = np.random.default_rng(3)
    scores = rng.normal(2.0, 1.0, size=(200, 1))
    point, low, high = bootstrap_ci(scores, mean_score, np.random.default_rng(4), reps=2000)
    assert point == pytest.approx(scores.mean())
    assert low < point < high
    assert low < 2.0 < high
    # a normal-theory 95% interval is 2 * 1.96 * sd / sqrt(n) wide
    assert high - low == pytest.approx(2 * 1.96 * scores.std() / np.sqrt(200), rel=0.15)


def test_bootstrap_is_reproducible_with_a_seeded_generator():
    scores = np.random.default_rng(5).random((5, 3))
    a = bootstrap_ci(scores, iqm, np.random.default_rng(9), reps=300)
    b = bootstrap_ci(scores, iqm, np.random.default_rng(9), reps=300)
    assert a == b


def test_mean_band_interpolates_on_the_common_range():
    steps, mean, std = mean_band(
        [
            (np.array([0.0, 10.0]), np.array([0.0, 10.0])),
            (np.array([0.0, 5.0, 20.0]), np.array([2.0, 2.0, 2.0])),
        ],
        points=11,
    )
    assert steps[0] == 0 and steps[-1] == 10  # only where both seeds have data
    assert mean[5] == pytest.approx((5.0 + 2.0) / 2)
    assert std[5] == pytest.approx(1.5)


def test_ema_smooths_and_is_debiased():
    assert ema(np.array([1.0, 1.0, 1.0])) == pytest.approx([1.0, 1.0, 1.0])  # no bias toward 0 at the start
    assert ema(np.array([0.0, 1.0]), weight=0.0) == pytest.approx([0.0, 1.0])
    assert ema(np.array([0.0, 1.0]), weight=0.5) == pytest.approx([0.0, 0.5 / 0.75])


# ----- make_report on hand-made run dirs (cached evaluations, no training) ----------------------------
def _fake_run(root, teacher, seed, levels, suite="maze-transfer", episodes=3):
    """A finished sweep cell whose evaluation is cached: {level: (solved_rate, mean_return)}."""
    run_dir = root / teacher / f"seed{seed}"
    run_dir.mkdir(parents=True)
    (run_dir / "config.json").write_text(json.dumps({"env": "maze", "teacher": teacher, "seed": seed}))
    (run_dir / "checkpoint.pt").write_bytes(b"not read: the cached evaluation is newer")
    old = time.time() - 100
    os.utime(run_dir / "checkpoint.pt", (old, old))
    (run_dir / DONE_MARKER).write_text("{}")
    cache = {name: {"solved_rate": s, "mean_return": r} for name, (s, r) in levels.items()}
    (run_dir / f"eval-{suite}.json").write_text(
        json.dumps({"suite": suite, "episodes": episodes, "seed": 0, "levels": cache})
    )
    return run_dir


def _cached(run_dir):
    return json.loads((run_dir / "eval-tiny-test.json").read_text())["levels"]


def _read_csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_report_tables_from_cached_evaluations(tmp_path, monkeypatch):
    import ued.evaluation

    def no_eval(*args, **kwargs):
        raise AssertionError("the cached evaluation should have been used")

    monkeypatch.setattr(ued.evaluation, "evaluate", no_eval)
    sweep = tmp_path / "sweep"
    _fake_run(sweep, "dr", 0, {"A": (1.0, 0.8), "B": (0.0, 0.0)})
    _fake_run(sweep, "dr", 1, {"A": (0.5, 0.4), "B": (0.2, 0.1)})
    _fake_run(sweep, "plr", 0, {"A": (0.0, 0.0), "B": (1.0, 0.9)})
    unfinished = _fake_run(sweep, "plr", 1, {"A": (1.0, 1.0), "B": (1.0, 1.0)})
    (unfinished / DONE_MARKER).unlink()  # still training: left out

    report = make_report(sweep, episodes=3, out=tmp_path / "rep", plots=False)
    rows = _read_csv(tmp_path / "rep" / "transfer.csv")
    assert [(r["level"], r["teacher"], r["seeds"]) for r in rows] == [
        ("A", "dr", "2"),
        ("B", "dr", "2"),
        ("A", "plr", "1"),
        ("B", "plr", "1"),
    ]
    assert float(rows[0]["solved_rate"]) == pytest.approx(0.75)
    assert float(rows[0]["mean_return"]) == pytest.approx(0.6)
    assert float(rows[0]["solved_rate_std"]) == pytest.approx(0.25)
    assert float(rows[1]["mean_return"]) == pytest.approx(0.05)
    assert float(rows[3]["solved_rate"]) == pytest.approx(1.0)

    agg = {r["teacher"]: r for r in _read_csv(tmp_path / "rep" / "aggregate.csv")}
    assert set(agg) == {"dr", "plr"}
    # dr: per-level returns [[0.8, 0.0], [0.4, 0.1]] -> IQM over 4 scores = mean(0.1, 0.4) = 0.25
    assert float(agg["dr"]["iqm_return"]) == pytest.approx(0.25)
    assert float(agg["dr"]["solved_rate"]) == pytest.approx((1.0 + 0.0 + 0.5 + 0.2) / 4)
    for r in agg.values():
        assert float(r["iqm_return_low"]) <= float(r["iqm_return"]) <= float(r["iqm_return_high"])
        assert float(r["solved_rate_low"]) <= float(r["solved_rate"]) <= float(r["solved_rate_high"])
    assert float(agg["dr"]["solved_rate_low"]) < float(agg["dr"]["solved_rate_high"])  # seeds disagree
    # plr has one seed: the bootstrap cannot vary anything
    assert float(agg["plr"]["solved_rate_low"]) == float(agg["plr"]["solved_rate_high"]) == 0.5

    md = (tmp_path / "rep" / "transfer.md").read_text()
    assert "| maze-transfer | dr | 2 |" in md and "| A | 0.75 | 0.600 | 0.00 | 0.000 |" in md
    assert report.files == [tmp_path / "rep" / n for n in ("transfer.md", "transfer.csv", "aggregate.csv")]


def test_a_newer_checkpoint_invalidates_the_cached_evaluation(tmp_path, monkeypatch):
    import ued.evaluation
    from ued.evaluation import LevelScore

    calls = []

    def fake_load_student(run_dir, role="protagonist", device="cpu"):
        return "policy", "family", type("C", (), {"env": "maze"})()

    def fake_evaluate(policy, family, named_levels, episodes=10, seed=0, *args, **kw):
        calls.append(len(named_levels))
        return [LevelScore(name, 0.3, 1.0, episodes) for name, _ in named_levels]

    monkeypatch.setattr(ued.evaluation, "evaluate", fake_evaluate)
    monkeypatch.setattr(ued.evaluation, "load_student", fake_load_student)
    sweep = tmp_path / "sweep"
    run = _fake_run(sweep, "dr", 0, {"A": (0.0, 0.0)})
    make_report(sweep, episodes=3, plots=False)
    assert calls == []  # cache newer than the checkpoint
    make_report(sweep, episodes=4, plots=False)
    assert len(calls) == 1  # other episode count: evaluated again and cached
    time.sleep(0.05)
    os.utime(run / "checkpoint.pt")  # the run trained further
    make_report(sweep, episodes=4, plots=False)
    assert len(calls) == 2
    cached = json.loads((run / "eval-maze-transfer.json").read_text())
    assert cached["episodes"] == 4 and len(cached["levels"]) == calls[-1]
    make_report(sweep, episodes=4, plots=False)
    assert len(calls) == 2


def test_report_usage_errors(tmp_path):
    with pytest.raises(UsageError, match="not a folder"):
        make_report(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="no finished runs"):
        make_report(tmp_path / "empty")
    result = CliRunner().invoke(cli, ["report", str(tmp_path / "empty")])
    assert result.exit_code == 2 and "no finished runs" in result.output


# ----- a real tiny sweep, then `ued report` -----------------------------------------------------------
def test_report_on_a_tiny_sweep_writes_tables_and_plots(tmp_path, monkeypatch):
    from PIL import Image

    from ued.environments.suites import SUITES, Suite, get_suite
    from ued.sweep import SweepConfig, run_sweep

    torch.set_num_threads(1)
    small = ["SmallCorridor", "FourRooms", "Maze"]  # 15x15 mazes: short episodes
    full = dict(get_suite("maze-transfer").levels())
    monkeypatch.setitem(
        SUITES,
        "tiny-test",
        Suite("tiny-test", "maze", "three small mazes", lambda: [(n, full[n]) for n in small]),
    )
    sweep = tmp_path / "sweep"
    config = SweepConfig(
        teachers=["dr", "plr"],
        out=str(sweep),
        seeds=2,
        total_steps=64,
        max_workers=2,
        overrides={"num_envs": 2, "num_steps": 16, "image_interval": 1},
    )
    assert run_sweep(config).ok

    result = CliRunner().invoke(cli, ["report", str(sweep), "--suite", "tiny-test", "--episodes", "2"])
    assert result.exit_code == 0, result.output
    assert "| tiny-test | dr | 2 |" in result.output and "| tiny-test | plr | 2 |" in result.output
    out = sweep / "report"
    rows = _read_csv(out / "transfer.csv")
    assert [(r["level"], r["teacher"]) for r in rows] == [(n, t) for t in ("dr", "plr") for n in small]
    for r in rows:  # every number is the mean over the two seeds' evaluations
        evals = [
            {e["level"]: e for e in _cached(sweep / r["teacher"] / f"seed{s}")}[r["level"]] for s in (0, 1)
        ]
        assert float(r["solved_rate"]) == pytest.approx(np.mean([e["solved_rate"] for e in evals]), abs=1e-5)
        assert float(r["mean_return"]) == pytest.approx(np.mean([e["mean_return"] for e in evals]), abs=1e-5)
    assert len(_read_csv(out / "aggregate.csv")) == 2
    md = (out / "transfer.md").read_text()
    assert all(f"| {n} |" in md for n in small)
    for name in ("curves.png", "solved.png", "levels.png"):
        assert str(out / name) in result.output
        with Image.open(out / name) as img:
            assert img.format == "PNG" and img.size[0] > 100 and img.size[1] > 100
