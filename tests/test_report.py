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
from rliable import library as rly
from rliable import metrics

from ued.cli.main import cli
from ued.errors import UsageError
from ued.report import (
    bootstrap_ci,
    ema,
    iqm,
    make_report,
    mean_band,
    mean_score,
    pairwise_improvement,
    performance_profile,
    probability_of_improvement,
    stratified_bootstrap,
    upscale_nearest,
)
from ued.sweep import DONE_MARKER


def test_iqm_drops_the_outer_quartiles():
    assert iqm([1, 2, 3, 4, 5, 6, 7, 8]) == pytest.approx(4.5)  # mean of 3, 4, 5, 6
    assert iqm([0, 0, 1, 1, 1, 1, 100, 100]) == pytest.approx(1.0)  # outliers on both ends ignored
    assert iqm([5.0]) == 5.0
    # 10 scores: int(2.5) = 2 cut from each end, like scipy.stats.trim_mean(x, 0.25)
    assert iqm(np.arange(10.0)) == pytest.approx(np.arange(2.0, 8.0).mean())
    # unordered input, pooled over a [runs, tasks] matrix
    assert iqm(np.array([[8, 1], [3, 6], [2, 7], [5, 4]])) == pytest.approx(4.5)
    with pytest.raises(ValueError):
        iqm([])


def test_mean_score_weighs_every_task_the_same():
    assert mean_score(np.array([[1.0, 0.0], [0.0, 0.0]])) == pytest.approx(0.25)
    assert mean_score([0.2, 0.4]) == pytest.approx(0.3)  # 1-D: one task, two runs


# fixed data of 3 teachers: [runs, levels] per-level returns (5 seeds, 4 levels) and solved rates
_RNG = np.random.default_rng(2024)
_RETURNS = {t: _RNG.beta(a, 2.0, size=(5, 4)) for t, a in (("dr", 1.0), ("plr", 2.0), ("accel", 3.0))}
_SOLVED = {t: np.round(x * 10) / 10 for t, x in _RETURNS.items()}


def test_bootstrap_ci_is_rliable_on_the_same_data_and_seed():
    for stat, agg in ((iqm, metrics.aggregate_iqm), (mean_score, metrics.aggregate_mean)):
        x = _RETURNS["plr"]
        ours = bootstrap_ci(x, stat, seed=7, reps=500)
        np.random.seed(7)
        points, cis = rly.get_interval_estimates({"plr": x}, lambda s, agg=agg: np.array([agg(s)]), reps=500)
        assert ours == pytest.approx((points["plr"][0], cis["plr"][0, 0], cis["plr"][1, 0]), abs=1e-12)
        assert ours[1] < ours[0] < ours[2]
    # another seed: another interval (the seed is really used), the same point
    other = bootstrap_ci(_RETURNS["plr"], mean_score, seed=8, reps=500)
    same = bootstrap_ci(_RETURNS["plr"], mean_score, seed=7, reps=500)
    assert other[0] == same[0] and other[1:] != same[1:]


def test_probability_of_improvement_is_rliable_on_the_same_data_and_seed():
    x, y = _RETURNS["accel"], _RETURNS["dr"]
    ours = probability_of_improvement(x, y, seed=3, reps=100)
    np.random.seed(3)
    points, cis = rly.get_interval_estimates(
        {"xy": [x, y]}, lambda a, b: np.array([metrics.probability_of_improvement(a, b)]), reps=100
    )
    assert ours == pytest.approx((points["xy"][0], cis["xy"][0, 0], cis["xy"][1, 0]), abs=1e-12)
    assert ours[1] <= ours[0] <= ours[2]


def test_pairwise_improvement_is_rliables_statistic():
    rng = np.random.default_rng(11)
    for runs_x, runs_y in ((5, 5), (3, 7), (1, 1), (1, 4)):
        # a coarse grid of values: many ties, as solved rates and returns of short evaluations have
        x = rng.integers(0, 4, size=(runs_x, 6)) / 3
        y = rng.integers(0, 4, size=(runs_y, 6)) / 3
        y[:, 0] = x[0, 0]  # a task where X's first run ties every run of Y
        assert pairwise_improvement(x, y) == pytest.approx(
            metrics.probability_of_improvement(x, y), abs=1e-12
        )
        assert pairwise_improvement(x, x) == pytest.approx(0.5)


def test_probability_of_improvement_by_hand():
    better = np.array([[1.0, 0.9], [0.8, 0.7]])
    worse = np.array([[0.1, 0.2], [0.0, 0.3], [0.2, 0.1]])  # runs may differ in number
    assert probability_of_improvement(better, worse, reps=50)[0] == pytest.approx(1.0)
    assert probability_of_improvement(worse, better, reps=50)[0] == pytest.approx(0.0)
    assert probability_of_improvement(better, better, reps=50)[0] == pytest.approx(0.5)
    # level 0: 1 of 2 pairs won; level 1: a tie counts one half -> (0.5 + 0.5) / 2
    x, y = np.array([[1.0, 0.5], [0.0, 0.5]]), np.array([[0.5, 0.5], [0.5, 0.5]])
    assert probability_of_improvement(x, y, reps=50)[0] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="same tasks"):
        probability_of_improvement(better, worse[:, :1])


def test_performance_profile_is_rliable_and_counts_runs_above_tau():
    taus = np.linspace(0, 1, 11)
    solved = {t: _SOLVED[t] for t in ("dr", "plr")}
    profiles, cis = performance_profile(solved, taus, seed=5, reps=200)
    np.random.seed(5)
    ref_profiles, ref_cis = rly.create_performance_profile(solved, taus, reps=200)
    for t, x in solved.items():
        assert profiles[t] == pytest.approx(ref_profiles[t])
        assert cis[t] == pytest.approx(ref_cis[t])
        assert profiles[t] == pytest.approx([(x > tau).mean() for tau in taus])
    by_hand, _ = performance_profile({"a": np.array([[0.0, 0.5], [1.0, 1.0]])}, np.array([0.25]), reps=20)
    assert by_hand["a"] == pytest.approx([0.75])  # 3 of the 4 (run, level) scores are above 0.25


def test_bootstraps_leave_the_global_numpy_state_as_it_was():
    np.random.seed(123)
    expected = np.random.random(3)
    np.random.seed(123)
    bootstrap_ci(_RETURNS["dr"], iqm, seed=1, reps=100)
    probability_of_improvement(_RETURNS["dr"], _RETURNS["plr"], seed=1, reps=20)
    performance_profile({"dr": _SOLVED["dr"]}, np.array([0.5]), seed=1, reps=20)
    assert np.random.random(3) == pytest.approx(expected)
    with pytest.raises(ValueError, match="seed"):
        bootstrap_ci(_RETURNS["dr"], iqm, seed=-1)


def test_bootstrap_of_constant_scores_is_degenerate():
    point, low, high = bootstrap_ci(np.full((3, 4), 0.7), iqm, seed=0, reps=200)
    assert point == low == high == pytest.approx(0.7)


def test_bootstrap_resamples_runs_within_each_task():
    # run 0 solves task 0 only, run 1 task 1 only: resampling whole runs always gives mean 0.5, but the
    # stratified bootstrap resamples each task's column on its own, so 0 and 1 both appear
    scores = np.array([[0.0, 1.0], [1.0, 0.0]])
    reps = stratified_bootstrap(scores, mean_score, seed=1, reps=400)
    assert reps.shape == (400,)
    assert reps.min() == 0.0 and reps.max() == 1.0
    assert set(np.round(reps, 6)) <= {0.0, 0.25, 0.5, 0.75, 1.0}


def test_bootstrap_ci_covers_the_mean_with_the_right_width():
    scores = np.random.default_rng(3).normal(2.0, 1.0, size=(200, 1))
    point, low, high = bootstrap_ci(scores, mean_score, seed=4, reps=2000)
    assert point == pytest.approx(scores.mean())
    assert low < point < high
    assert low < 2.0 < high
    # a normal-theory 95% interval is 2 * 1.96 * sd / sqrt(n) wide
    assert high - low == pytest.approx(2 * 1.96 * scores.std() / np.sqrt(200), rel=0.15)


def test_bootstrap_is_reproducible_with_a_seed():
    scores = np.random.default_rng(5).random((5, 3))
    assert bootstrap_ci(scores, iqm, seed=9, reps=300) == bootstrap_ci(scores, iqm, seed=9, reps=300)


def test_upscale_nearest_makes_small_pictures_readable():
    small = np.arange(80 * 112 * 3, dtype=np.uint8).reshape(80, 112, 3)  # the corridor example's size
    big = upscale_nearest(small)
    assert big.shape == (160, 224, 3)
    assert (big[::2, ::2] == small).all() and (big[1::2, 1::2] == small).all()  # whole cells, no blur
    assert upscale_nearest(small, min_side=200).shape == (240, 336, 3)  # factor 3: 80 * 3 >= 200
    large = np.zeros((480, 480, 3), dtype=np.uint8)
    assert upscale_nearest(large) is large


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

    report = make_report(sweep, episodes=3, out=tmp_path / "rep", plots=False, bootstrap_reps=300)
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
    assert report.files == [
        tmp_path / "rep" / n for n in ("transfer.md", "transfer.csv", "aggregate.csv", "improvement.csv")
    ]
    # P(dr > plr) on returns: level A both dr seeds (0.8, 0.4) beat plr's 0.0, level B neither (0.0, 0.1
    # against 0.9) -> (1 + 0) / 2
    (imp,) = _read_csv(tmp_path / "rep" / "improvement.csv")
    assert (imp["teacher_x"], imp["teacher_y"], imp["levels"]) == ("dr", "plr", "2")
    assert float(imp["probability"]) == pytest.approx(0.5)
    assert float(imp["low"]) <= 0.5 <= float(imp["high"])
    assert "| maze-transfer | dr | plr | 0.500 [" in md
    # no run logged periodic evaluations: said so, and no transfer-curve file
    assert "Left out (no periodic held-out evaluation scalars" in md and "dr/seed0, dr/seed1, plr/seed0" in md
    assert not (tmp_path / "rep" / "transfer_curves.csv").exists()


def _log_evals(run_dir, evals, prefix="eval"):
    """Write periodic-evaluation scalars as the training loop does: {step: {level: (solved, return)}}, the
    mean over levels under eval/mean/..."""
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(run_dir))
    for step, levels in evals.items():
        for name, (solved, ret) in levels.items():
            writer.add_scalar(f"{prefix}/{name}/solved_rate", solved, step)
            writer.add_scalar(f"{prefix}/{name}/return", ret, step)
        writer.add_scalar(f"{prefix}/mean/solved_rate", np.mean([s for s, _ in levels.values()]), step)
        writer.add_scalar(f"{prefix}/mean/return", np.mean([r for _, r in levels.values()]), step)
        writer.add_scalar("protagonist/mean_return", 0.1 * step / 100, step)  # a learning curve too
    writer.close()


def test_report_draws_transfer_over_training_from_eval_scalars(tmp_path):
    from PIL import Image

    sweep = tmp_path / "sweep"
    levels = {"A": (1.0, 0.8), "B": (0.0, 0.0)}
    dr0 = _fake_run(sweep, "dr", 0, levels)
    dr1 = _fake_run(sweep, "dr", 1, levels)
    plr0 = _fake_run(sweep, "plr", 0, levels)
    plr1 = _fake_run(sweep, "plr", 1, levels)
    _log_evals(dr0, {100: {"A": (0.0, 0.0), "B": (0.2, 0.1)}, 200: {"A": (0.5, 0.4), "B": (0.5, 0.3)}})
    _log_evals(dr1, {100: {"A": (0.2, 0.1), "B": (0.0, 0.0)}, 200: {"A": (1.0, 0.9), "B": (0.7, 0.5)}})
    _log_evals(plr0, {100: {"A": (0.1, 0.1), "B": (0.1, 0.1)}, 300: {"A": (0.3, 0.2), "B": (0.1, 0.1)}})
    # the antagonist's scalars are not the protagonist's: plr1 counts as a run without evaluations
    _log_evals(plr1, {100: {"A": (1.0, 1.0), "B": (1.0, 1.0)}}, prefix="eval_antagonist")

    report = make_report(sweep, episodes=3, out=tmp_path / "rep", bootstrap_reps=200)
    dr, plr = report.transfer_curves
    assert (dr.teacher, dr.runs, dr.levels) == ("dr", ["dr/seed0", "dr/seed1"], ["A", "B"])
    assert dr.steps == pytest.approx([100, 200]) and dr.solved.shape == (2, 2, 2)
    # mean over levels and seeds, at each evaluation
    assert dr.mean == pytest.approx([(0.0 + 0.2 + 0.2 + 0.0) / 4, (0.5 + 0.5 + 1.0 + 0.7) / 4])
    assert (dr.low <= dr.mean + 1e-12).all() and (dr.mean <= dr.high + 1e-12).all()
    assert dr.low[1] < dr.high[1]  # the seeds disagree at step 200
    assert plr.runs == ["plr/seed0"] and plr.steps == pytest.approx([100, 300])
    assert plr.low == pytest.approx(plr.mean) and plr.high == pytest.approx(plr.mean)  # one seed

    rows = {(r["teacher"], r["level"]): r for r in _read_csv(tmp_path / "rep" / "transfer_curves.csv")}
    assert list(rows) == [
        ("dr", "mean"),
        ("dr", "A"),
        ("dr", "B"),
        ("plr", "mean"),
        ("plr", "A"),
        ("plr", "B"),
    ]
    assert rows["dr", "mean"]["step"] == "200" and rows["plr", "mean"]["step"] == "300"
    assert float(rows["dr", "mean"]["solved_rate"]) == pytest.approx(0.675)
    assert float(rows["dr", "A"]["solved_rate"]) == pytest.approx(0.75)
    assert float(rows["dr", "A"]["solved_rate_std"]) == pytest.approx(0.25)
    assert float(rows["dr", "B"]["return"]) == pytest.approx(0.4)
    assert float(rows["dr", "mean"]["return"]) == pytest.approx((0.4 + 0.3 + 0.9 + 0.5) / 4)
    assert float(rows["plr", "mean"]["solved_rate"]) == pytest.approx(0.2)
    low, high = float(rows["dr", "mean"]["solved_rate_low"]), float(rows["dr", "mean"]["solved_rate_high"])
    assert 0.5 <= low < 0.675 < high <= 0.85  # seed means 0.5 and 0.85 bound every resample

    md = (tmp_path / "rep" / "transfer.md").read_text()
    assert "## Held-out transfer over training" in md
    assert "| dr | 2 | 200 | 0.675 [" in md and "| plr | 1 | 300 | 0.200 [" in md
    assert "Left out (no periodic held-out evaluation scalars" in md and "plr/seed1" in md
    for name in ("transfer_curves.png", "transfer_levels.png", "profile.png", "curves.png"):
        assert tmp_path / "rep" / name in report.files
        with Image.open(tmp_path / "rep" / name) as img:
            assert img.format == "PNG" and img.size[0] > 300 and img.size[1] > 200
    # the profile: the fraction of (run, level) solved rates above each tau
    prof = report.profiles["maze-transfer"]
    k = int(np.argmin(np.abs(prof["taus"] - 0.5)))
    assert prof["profiles"]["dr"][k] == pytest.approx(0.5)  # solved rates 1, 0, 1, 0


def test_transfer_curve_interpolates_runs_evaluated_at_other_steps():
    from ued.report import transfer_curve

    def scalars(steps, solved):
        steps = np.asarray(steps, dtype=float)
        return {"solved_rate": {"mean": (steps, np.asarray(solved, dtype=float))}}

    runs = {"a": scalars([0, 100, 200], [0.0, 0.2, 0.4]), "b": scalars([50, 150, 250], [0.0, 0.5, 1.0])}
    curve = transfer_curve("dr", runs, reps=50)
    assert curve.levels == ["mean"] and curve.returns is None
    assert curve.steps == pytest.approx([50, 100, 150, 200])  # only where both runs have evaluations
    assert curve.solved[0, 0] == pytest.approx([0.1, 0.2, 0.3, 0.4])
    assert curve.solved[1, 0] == pytest.approx([0.0, 0.25, 0.5, 0.75])
    assert [r["level"] for r in curve.final] == ["mean"] and curve.final[0]["return"] == ""
    assert transfer_curve("dr", {"a": scalars([0, 10], [0, 0]), "b": scalars([20, 30], [0, 0])}) is None


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
    make_report(sweep, episodes=3, plots=False, bootstrap_reps=50)
    assert calls == []  # cache newer than the checkpoint
    make_report(sweep, episodes=4, plots=False, bootstrap_reps=50)
    assert len(calls) == 1  # other episode count: evaluated again and cached
    time.sleep(0.05)
    os.utime(run / "checkpoint.pt")  # the run trained further
    make_report(sweep, episodes=4, plots=False, bootstrap_reps=50)
    assert len(calls) == 2
    cached = json.loads((run / "eval-maze-transfer.json").read_text())
    assert cached["episodes"] == 4 and len(cached["levels"]) == calls[-1]
    make_report(sweep, episodes=4, plots=False, bootstrap_reps=50)
    assert len(calls) == 2


def test_report_evaluates_the_published_episode_count_by_default(tmp_path):
    """dcd eval.py --num_episodes 100 (docs/protocol.md), as `ued eval`: a cache made with 100 is reused."""
    sweep = tmp_path / "sweep"
    _fake_run(sweep, "dr", 0, {"A": (0.5, 1.0)}, episodes=100)
    report = make_report(sweep, plots=False, bootstrap_reps=50)
    assert "100 episodes per level" in (sweep / "report" / "transfer.md").read_text()
    assert report.per_level


def test_report_usage_errors(tmp_path):
    with pytest.raises(UsageError, match="not a folder"):
        make_report(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="no finished runs"):
        make_report(tmp_path / "empty")
    result = CliRunner().invoke(cli, ["report", str(tmp_path / "empty")])
    assert result.exit_code == 2 and "no finished runs" in result.output
    with pytest.raises(UsageError, match="--reps"):
        make_report(tmp_path / "empty", bootstrap_reps=5)
    result = CliRunner().invoke(cli, ["report", str(tmp_path / "empty"), "--seed", "-1"])
    assert result.exit_code == 2 and "--seed must be in [0, 2**32)" in result.output


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
    held_out = tmp_path / "held-out"  # periodic evaluation during training, on two small mazes
    held_out.mkdir()
    (held_out / "near.txt").write_text("max_steps: 20\n#######\n#>.G..#\n#.###.#\n#.....#\n#######\n")
    (held_out / "far.txt").write_text("max_steps: 20\n#######\n#>....#\n#.###.#\n#....G#\n#######\n")
    config = SweepConfig(
        teachers=["dr", "plr"],
        out=str(sweep),
        seeds=2,
        total_steps=64,
        max_workers=2,
        overrides={
            "num_envs": 2,
            "num_steps": 16,
            "image_interval": 1,
            "eval_interval": 1,
            "eval_levels": str(held_out),
            "eval_episodes": 2,
        },
    )
    assert run_sweep(config).ok

    result = CliRunner().invoke(
        cli, ["report", str(sweep), "--suite", "tiny-test", "--episodes", "2", "--reps", "200"]
    )
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
    assert "| tiny-test | dr | plr |" in md  # probability of improvement
    for name in ("curves.png", "solved.png", "levels.png", "profile.png", "transfer_curves.png"):
        assert str(out / name) in result.output
        with Image.open(out / name) as img:
            assert img.format == "PNG" and img.size[0] > 100 and img.size[1] > 100
    # transfer over training: the training loop's eval/<level>/... scalars, after each of the 2 updates
    final = {(r["teacher"], r["level"]): r for r in _read_csv(out / "transfer_curves.csv")}
    assert sorted(final) == sorted((t, lv) for t in ("dr", "plr") for lv in ("mean", "far", "near"))
    for (_, level), r in final.items():
        assert r["seeds"] == "2" and r["step"] == "64"
        assert (
            0.0 <= float(r["solved_rate_low"]) <= float(r["solved_rate"]) <= float(r["solved_rate_high"]) <= 1
        )
        assert (
            float(r["solved_rate"]) in {0.0, 0.25, 0.5, 0.75, 1.0} or level == "mean"
        )  # 2 seeds x 2 episodes
    assert "## Held-out transfer over training" in md and "| dr | 2 | 64 |" in md
