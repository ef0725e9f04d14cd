"""Tables and plots of a finished (or partly finished) sweep: zero-shot transfer per level and teacher,
aggregates with bootstrap confidence intervals over seeds, held-out transfer over training, learning curves
and generated-level strips.

Statistics are rliable's (Agarwal et al., 2021; the `rliable` package): the interquartile mean (IQM) of
per-level returns and the mean solved rate, each with a 95% stratified-bootstrap confidence interval over
seeds (runs are resampled with replacement independently for every level), performance profiles of solved
rates and the probability of improvement of one teacher over another. Every bootstrap is seeded with the
report's seed (rliable draws from numpy's global RNG: see `seeded_global_numpy`), each one on its own, so
a teacher's interval does not depend on which other teachers or suites the sweep holds.

Files written (default: SWEEP/report/):
    transfer.md          per-level table (solved rate and return, mean over seeds), the aggregate table,
                         probability of improvement for each pair of teachers, and transfer over training
    transfer.csv         one row per (suite, level, teacher): seeds, solved rate and return (mean, std)
    aggregate.csv        one row per (suite, teacher): IQM return and mean solved rate with 95% CIs
    improvement.csv      one row per (suite, teacher X, teacher Y): P(X > Y) on per-level returns, 95% CI
    transfer_curves.csv  per teacher and level: held-out solved rate and return at the last periodic
                         evaluation (the runs' TensorBoard `eval/<level>/...` scalars)
    curves.png           training return vs environment steps per teacher (mean +- std over seeds)
    transfer_curves.png  held-out solved rate vs environment steps per teacher (mean, 95% bootstrap CI)
    transfer_levels.png  the same per held-out level, one panel each (mean over seeds, band: min to max)
    profile.png          performance profiles: fraction of runs with solved rate > tau, per suite
    solved.png           per-level solved-rate bars per teacher (error bars: std over seeds)
    levels.png           levels each teacher generated over training (from the runs' TensorBoard images)
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
from PIL import Image
from rliable import library as rly
from rliable import metrics
from rliable.library import StratifiedBootstrap
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from ued.checkpoint import CHECKPOINT_NAME
from ued.config import load_config
from ued.environments.suites import resolve_suite
from ued.errors import UsageError
from ued.evaluation import evaluate_suite
from ued.io import write_json, write_text
from ued.run import build_family
from ued.sweep import finished_runs


# ----- statistics (pure functions, computed by rliable) ------------------------------------------------
@contextlib.contextmanager
def seeded_global_numpy(seed: int) -> Iterator[None]:
    """Run the body with numpy's *global* RNG seeded with `seed`, then restore the caller's global state.

    rliable 1.2 draws its bootstrap indices with `np.random.choice` (`StratifiedBootstrap.update_indices`);
    the `random_state` it accepts is handed to arch, which does not use it for those indices (and
    deprecates it). Seeding the global RNG is the only way to make rliable's intervals reproducible; this
    context does it without leaving a trace for the caller. Not thread-safe (no global RNG is)."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= int(seed) < 2**32:
        raise ValueError(f"the bootstrap seed must be an int in [0, 2**32), got {seed!r}")
    saved = np.random.get_state()
    np.random.seed(int(seed))
    try:
        yield
    finally:
        np.random.set_state(saved)


def _matrix(scores: np.ndarray | Sequence[float]) -> np.ndarray:
    """scores -> float64 [runs, tasks] (a 1-D input is one task)."""
    x = np.asarray(scores, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"scores must be a non-empty [runs, tasks] matrix, got shape {x.shape}")
    return x


def iqm(scores: np.ndarray | Sequence[float]) -> float:
    """Interquartile mean of all the scores pooled (any shape): the mean of the middle 50%, cutting
    int(0.25 * n) scores from each end of the sorted scores (rliable's `metrics.aggregate_iqm`, i.e.
    `scipy.stats.trim_mean(x, 0.25)`)."""
    x = np.asarray(scores, dtype=np.float64)
    if x.size == 0:
        raise ValueError("iqm of an empty set of scores")
    return float(metrics.aggregate_iqm(x))


def mean_score(scores: np.ndarray | Sequence[float]) -> float:
    """Mean over tasks of the per-task mean over runs of a [runs, tasks] matrix (rliable's
    `metrics.aggregate_mean`; the aggregate for solved rates)."""
    return float(metrics.aggregate_mean(_matrix(scores)))


def _vector(statistic: Callable[..., float]) -> Callable[..., np.ndarray]:
    return lambda *x: np.array([statistic(*x)], dtype=np.float64)


def stratified_bootstrap(
    scores: np.ndarray, statistic: Callable[[np.ndarray], float], seed: int = 0, reps: int = 2000
) -> np.ndarray:
    """`reps` bootstrap replicates [reps] of `statistic` on a [runs, tasks] score matrix, from rliable's
    `StratifiedBootstrap`: each replicate resamples the runs with replacement *within every task (column)
    separately* and applies `statistic` to the resampled [runs, tasks] matrix. Seeded with `seed`."""
    x = _matrix(scores)
    with seeded_global_numpy(seed):
        values = StratifiedBootstrap(x).apply(_vector(statistic), reps)
    return np.asarray(values, dtype=np.float64).reshape(reps)


def bootstrap_ci(
    scores: np.ndarray,
    statistic: Callable[[np.ndarray], float],
    seed: int = 0,
    reps: int = 2000,
    confidence: float = 0.95,
) -> tuple[float, float, float]:
    """(point estimate, low, high): `statistic` of the [runs, tasks] matrix and the percentile interval of
    its stratified bootstrap (`rliable.library.get_interval_estimates`, seeded with `seed`)."""
    x = _matrix(scores)
    with seeded_global_numpy(seed):
        points, intervals = rly.get_interval_estimates(
            {"x": x}, _vector(statistic), reps=reps, confidence_interval_size=confidence
        )
    return float(points["x"][0]), float(intervals["x"][0, 0]), float(intervals["x"][1, 0])


def pairwise_improvement(scores_x: np.ndarray, scores_y: np.ndarray) -> float:
    """rliable's `metrics.probability_of_improvement`, vectorised: per task, the share of (run of X, run
    of Y) pairs where X scores higher, a tie counting one half (that is the Mann-Whitney U over
    runs_x * runs_y that rliable computes with scipy), averaged over tasks. The same numbers (checked in
    the tests), about 100x faster: the bootstrap calls it thousands of times."""
    x, y = scores_x[:, None, :], scores_y[None, :, :]  # [runs_x, 1, tasks], [1, runs_y, tasks]
    per_task = (x > y).mean(axis=(0, 1)) + 0.5 * (x == y).mean(axis=(0, 1))
    return float(per_task.mean())


def probability_of_improvement(
    scores_x: np.ndarray,
    scores_y: np.ndarray,
    seed: int = 0,
    reps: int = 2000,
    confidence: float = 0.95,
) -> tuple[float, float, float]:
    """(P(X > Y), low, high) for two [runs, tasks] matrices over the same tasks (the run counts may
    differ): the point is rliable's `metrics.probability_of_improvement` (per task, the Mann-Whitney U of
    X's runs over Y's divided by runs_x * runs_y, so ties count one half; averaged over tasks), the
    interval rliable's stratified bootstrap of it, X and Y resampled independently
    (`get_interval_estimates` on a pair of matrices; the replicates use `pairwise_improvement`, the same
    statistic vectorised), seeded with `seed`."""
    x, y = _matrix(scores_x), _matrix(scores_y)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"both teachers need the same tasks, got {x.shape[1]} and {y.shape[1]}")
    with seeded_global_numpy(seed):
        _, intervals = rly.get_interval_estimates(
            {"xy": [x, y]}, _vector(pairwise_improvement), reps=reps, confidence_interval_size=confidence
        )
    point = float(metrics.probability_of_improvement(x, y))
    return point, float(intervals["xy"][0, 0]), float(intervals["xy"][1, 0])


def performance_profile(
    scores: dict[str, np.ndarray],
    taus: np.ndarray,
    seed: int = 0,
    reps: int = 2000,
    confidence: float = 0.95,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """rliable's score distributions (`rly.create_performance_profile`): for each method's [runs, tasks]
    matrix, the fraction of all (run, task) scores above each threshold in `taus` [K] -> profiles
    {method: [K]}, and their stratified-bootstrap intervals {method: [2, K]} (low row, high row), seeded
    with `seed`."""
    matrices = {k: _matrix(v) for k, v in scores.items()}
    with seeded_global_numpy(seed):
        profiles, cis = rly.create_performance_profile(
            matrices, np.asarray(taus, dtype=np.float64), reps=reps, confidence_interval_size=confidence
        )
    return profiles, cis


# ----- evaluation with a cache in the run dir ---------------------------------------------------------
def _checkpoint_mtime(run_dir: Path) -> float:
    path = run_dir / CHECKPOINT_NAME
    if not path.is_file():
        raise UsageError(f"{run_dir} has no {CHECKPOINT_NAME}; was it trained by `ued train` / `ued sweep`?")
    return path.stat().st_mtime


def evaluate_run(
    run_dir: str | os.PathLike, suite: str, episodes: int, seed: int = 0
) -> dict[str, dict[str, float]]:
    """Per-level transfer results {level: {"solved_rate", "mean_return"}} of a run's protagonist on
    `suite`, cached in RUN_DIR/eval-<suite>.json.

    The cache is reused when it is newer than the checkpoint and was made with the same episodes and seed.
    """
    run_dir = Path(run_dir)
    cache = run_dir / f"eval-{suite}.json"
    ckpt_time = _checkpoint_mtime(run_dir)
    if cache.is_file() and cache.stat().st_mtime >= ckpt_time:
        try:
            data = json.loads(cache.read_text())
            if data.get("episodes") == episodes and data.get("seed") == seed and data.get("levels"):
                stored = data["levels"]  # a list in suite order (a {name: row} dict is read too)
                pairs = stored.items() if isinstance(stored, dict) else [(r["level"], r) for r in stored]
                return {
                    str(name): {
                        "solved_rate": float(r["solved_rate"]),
                        "mean_return": float(r["mean_return"]),
                    }
                    for name, r in pairs
                }
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError, ValueError):
            pass  # a damaged cache is recomputed
    rows = evaluate_suite(run_dir, suite, episodes=episodes, seed=seed)
    levels = {
        r.name: {"solved_rate": float(r.solved_rate), "mean_return": float(r.mean_return)} for r in rows
    }
    in_order = [{"level": name, **row} for name, row in levels.items()]  # JSON objects get sorted keys
    write_json(cache, {"suite": suite, "episodes": episodes, "seed": seed, "levels": in_order})
    return levels


# ----- tables -----------------------------------------------------------------------------------------
@dataclass
class Report:
    """What `make_report` computed and where it wrote it."""

    out: Path
    #: per (suite, level, teacher): {"seeds", "solved_rate", "solved_rate_std", "mean_return", "mean_return_std"}
    per_level: list[dict[str, Any]] = field(default_factory=list)
    #: per (suite, teacher): {"seeds", "iqm_return", "iqm_return_low/high", "solved_rate", "solved_rate_low/high"}
    aggregate: list[dict[str, Any]] = field(default_factory=list)
    #: per (suite, teacher x, teacher y), x before y in sweep order: {"probability", "low", "high"}, the
    #: probability that x's per-level return beats y's
    improvement: list[dict[str, Any]] = field(default_factory=list)
    #: per suite: {"taus": [K], "profiles": {teacher: [K]}, "cis": {teacher: [2, K]}} (solved rates)
    profiles: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: per teacher with periodic evaluations: its `TransferCurve`
    transfer_curves: list[TransferCurve] = field(default_factory=list)
    #: per (teacher, level): the last periodic evaluation, see `TransferCurve.final_rows`
    transfer_final: list[dict[str, Any]] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    """files or runs left out, with the reason"""

    def aggregate_markdown(self) -> str:
        """The aggregate table as Markdown."""
        return _aggregate_markdown(self.aggregate)


def _fmt(x: float, digits: int = 3) -> str:
    return f"{x:.{digits}f}"


def _aggregate_markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| suite | teacher | seeds | IQM return [95% CI] | solved rate [95% CI] |",
        "|---|---|---:|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['suite']} | {r['teacher']} | {r['seeds']} | "
            f"{_fmt(r['iqm_return'])} [{_fmt(r['iqm_return_low'])}, {_fmt(r['iqm_return_high'])}] | "
            f"{_fmt(r['solved_rate'])} [{_fmt(r['solved_rate_low'])}, {_fmt(r['solved_rate_high'])}] |"
        )
    return "\n".join(lines)


def _per_level_markdown(rows: list[dict[str, Any]], teachers: list[str]) -> str:
    blocks = []
    for suite in dict.fromkeys(r["suite"] for r in rows):
        suite_rows = [r for r in rows if r["suite"] == suite]
        levels = list(dict.fromkeys(r["level"] for r in suite_rows))
        present = [t for t in teachers if any(r["teacher"] == t for r in suite_rows)]
        by = {(r["level"], r["teacher"]): r for r in suite_rows}
        head = "| level | " + " | ".join(f"{t} solved | {t} return" for t in present) + " |"
        rule = "|---|" + "---:|---:|" * len(present)
        lines = [
            f"### {suite}",
            "",
            "Mean over seeds of the solved rate and the mean episode return.",
            "",
            head,
            rule,
        ]
        for level in levels:
            cells = []
            for t in present:
                r = by.get((level, t))
                cells += [_fmt(r["solved_rate"], 2), _fmt(r["mean_return"])] if r else ["", ""]
            lines.append(f"| {level} | " + " | ".join(cells) + " |")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def _improvement_markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["| suite | X | Y | P(X > Y) [95% CI] |", "|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['suite']} | {r['teacher_x']} | {r['teacher_y']} | "
            f"{_fmt(r['probability'])} [{_fmt(r['low'])}, {_fmt(r['high'])}] |"
        )
    return "\n".join(lines)


def _transfer_final_markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| teacher | seeds | env steps | mean solved rate [95% CI] | mean return |",
        "|---|---:|---:|---|---:|",
    ]
    for r in rows:
        if r["level"] != "mean":
            continue
        ret = "" if r["return"] == "" else _fmt(r["return"])
        lines.append(
            f"| {r['teacher']} | {r['seeds']} | {r['step']:,} | {_fmt(r['solved_rate'])} "
            f"[{_fmt(r['solved_rate_low'])}, {_fmt(r['solved_rate_high'])}] | {ret} |"
        )
    return "\n".join(lines)


def _write_csv(path: Path, rows: list[dict[str, Any]], columns: list[str]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: (f"{r[k]:.6g}" if isinstance(r[k], float) else r[k]) for k in columns})
    write_text(path, buf.getvalue())


# ----- TensorBoard logs -------------------------------------------------------------------------------
#: scalar tags tried, in order, for the learning curve (the first one a run logs is used)
CURVE_TAGS = (
    "protagonist/mean_return",
    "protagonist/episode_return",
    "student/mean_return",
    "train/mean_return",
    "train/episode_return",
)


def _accumulator(run_dir: Path, images: bool = False) -> Any:
    guidance = {"scalars": 0, "images": 0 if images else 1, "tensors": 1, "histograms": 1}
    acc = EventAccumulator(str(run_dir), size_guidance=guidance)
    acc.Reload()
    return acc


def _by_step(events: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
    """Scalar events -> (env steps [T], values [T]) sorted by step; a step logged again (a resumed run
    repeats the updates after its last checkpoint) keeps its last value."""
    by_step = {int(e.step): float(e.value) for e in events}
    steps = np.array(sorted(by_step), dtype=float)
    return steps, np.array([by_step[int(s)] for s in steps], dtype=np.float64)


def learning_curve(
    run_dir: str | os.PathLike, tags: Sequence[str] = CURVE_TAGS
) -> tuple[str, np.ndarray, np.ndarray] | None:
    """(tag, env steps, values) of the first of `tags` the run logged, or None."""
    acc = _accumulator(Path(run_dir))
    available = set(acc.Tags().get("scalars", []))
    for tag in tags:
        if tag in available:
            return (tag, *_by_step(acc.Scalars(tag)))
    return None


#: prefix of the protagonist's periodic held-out evaluation scalars (other roles: `eval_<role>`)
EVAL_PREFIX = "eval"
#: the "level" under which periodic evaluation logs the mean over levels
MEAN_LEVEL = "mean"


def eval_scalars(
    run_dir: str | os.PathLike, prefix: str = EVAL_PREFIX
) -> dict[str, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """A run's periodic held-out evaluations from its TensorBoard scalars `<prefix>/<level>/<metric>`:
    {metric: {level: (env steps [T], values [T])}}, metric "solved_rate" or "return", level `MEAN_LEVEL`
    for the mean over levels. {} when the run logged none (trained without periodic evaluation)."""
    acc = _accumulator(Path(run_dir))
    out: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {}
    for tag in acc.Tags().get("scalars", []):
        parts = tag.split("/")
        if len(parts) < 3 or parts[0] != prefix:
            continue
        out.setdefault(parts[-1], {})["/".join(parts[1:-1])] = _by_step(acc.Scalars(tag))
    return out


@dataclass
class TransferCurve:
    """Held-out solved rate over training of one teacher's runs, from their periodic evaluations.

    The curve is the mean over levels of the mean over runs at every step (rliable's `aggregate_mean`);
    its band is rliable's pointwise 95% stratified-bootstrap interval (runs resampled within each level,
    at each step on its own)."""

    teacher: str
    #: the runs, by name (`teacher/seed<k>`)
    runs: list[str]
    #: the levels aggregated: every per-level name all runs logged, or [MEAN_LEVEL] when they logged only
    #: the mean over levels
    levels: list[str]
    #: [T] env steps: every evaluation step of the runs within the range all of them cover
    steps: np.ndarray
    #: [runs, levels, T] solved rates at `steps` (linear between a run's own evaluations, which are the
    #: values themselves when the runs evaluated at the same steps)
    solved: np.ndarray
    #: [runs, levels, T] mean returns likewise, or None when not every run logged them
    returns: np.ndarray | None
    #: [T] the curve, and [T] the low and high ends of its band
    mean: np.ndarray
    low: np.ndarray
    high: np.ndarray
    #: the last step, per level and for the mean: see `transfer_curve`
    final: list[dict[str, Any]] = field(default_factory=list)


def transfer_curve(
    teacher: str,
    runs: dict[str, dict[str, dict[str, tuple[np.ndarray, np.ndarray]]]],
    *,
    seed: int = 0,
    reps: int = 2000,
    confidence: float = 0.95,
) -> TransferCurve | None:
    """The `TransferCurve` of `teacher` from its runs' `eval_scalars` ({run name: scalars}, every run with
    solved-rate scalars), or None when they share no level or no range of steps.

    `final` holds one row per level at the curve's last step, the mean over levels first: {"teacher",
    "level", "seeds", "step", "solved_rate" (mean over runs; for the mean row, over levels too),
    "solved_rate_std" (std over runs), "solved_rate_low"/"_high" (95% stratified-bootstrap interval),
    "return", "return_std"} ("" where returns were not logged). Bootstraps are seeded with `seed`."""
    if not runs:
        raise ValueError("transfer_curve needs at least one run")
    solved = {name: scalars.get("solved_rate", {}) for name, scalars in runs.items()}
    first = next(iter(solved.values()))
    levels = [lv for lv in first if lv != MEAN_LEVEL and all(lv in s for s in solved.values())]
    if not levels:
        if not all(MEAN_LEVEL in s for s in solved.values()):
            return None
        levels = [MEAN_LEVEL]
    series = [[solved[name][lv] for lv in levels] for name in runs]
    lo = max(float(s.min()) for per_run in series for s, _ in per_run)
    hi = min(float(s.max()) for per_run in series for s, _ in per_run)
    if hi < lo:
        return None
    grid = np.unique(np.concatenate([s[(s >= lo) & (s <= hi)] for per_run in series for s, _ in per_run]))

    def on_grid(metric: str) -> np.ndarray | None:
        table = []
        for scalars in runs.values():
            got = scalars.get(metric, {})
            if not all(lv in got for lv in levels):
                return None
            table.append([np.interp(grid, *got[lv]) for lv in levels])
        return np.asarray(table, dtype=np.float64)  # [runs, levels, T]

    scores = on_grid("solved_rate")
    assert scores is not None
    returns = on_grid("return")
    with seeded_global_numpy(seed):
        points, intervals = rly.get_interval_estimates(
            {teacher: scores}, metrics.aggregate_mean, reps=reps, confidence_interval_size=confidence
        )
    last = scores[:, :, -1]  # [runs, levels]

    def last_means(x: np.ndarray) -> np.ndarray:  # [mean over levels, then each level's mean over runs]
        return np.concatenate([[metrics.aggregate_mean(x)], x.mean(axis=0)])

    with seeded_global_numpy(seed):
        _, last_ci = rly.get_interval_estimates(
            {teacher: last}, last_means, reps=reps, confidence_interval_size=confidence
        )
    final = []
    names = [MEAN_LEVEL] + ([] if levels == [MEAN_LEVEL] else levels)
    for k, name in enumerate(names):
        per_run = last.mean(axis=1) if k == 0 else last[:, k - 1]
        row = {
            "teacher": teacher,
            "level": name,
            "seeds": len(runs),
            "step": int(grid[-1]),
            "solved_rate": float(per_run.mean()),
            "solved_rate_std": float(per_run.std()),
            "solved_rate_low": float(last_ci[teacher][0, k]),
            "solved_rate_high": float(last_ci[teacher][1, k]),
            "return": "",
            "return_std": "",
        }
        if returns is not None:
            ret = returns[:, :, -1].mean(axis=1) if k == 0 else returns[:, k - 1, -1]
            row["return"], row["return_std"] = float(ret.mean()), float(ret.std())
        final.append(row)
    return TransferCurve(
        teacher,
        list(runs),
        levels,
        grid,
        scores,
        returns,
        np.asarray(points[teacher], dtype=np.float64),
        np.asarray(intervals[teacher][0], dtype=np.float64),
        np.asarray(intervals[teacher][1], dtype=np.float64),
        final,
    )


def level_images(run_dir: str | os.PathLike) -> list[tuple[int, np.ndarray]]:
    """(env step, RGB image) of every level picture the run logged to TensorBoard, oldest first."""
    acc = _accumulator(Path(run_dir), images=True)
    out = []
    for tag in acc.Tags().get("images", []):
        if "level" not in tag:
            continue
        for event in acc.Images(tag):
            img = np.asarray(Image.open(io.BytesIO(event.encoded_image_string)).convert("RGB"))
            out.append((int(event.step), img))
    out.sort(key=lambda t: t[0])
    return out


def ema(values: np.ndarray, weight: float = 0.6) -> np.ndarray:
    """TensorBoard-style exponential moving average (weight 0 = no smoothing), debiased at the start."""
    out = np.empty(len(values), dtype=np.float64)
    acc, norm = 0.0, 0.0
    for i, v in enumerate(np.asarray(values, dtype=np.float64)):
        acc = weight * acc + (1 - weight) * v
        norm = weight * norm + (1 - weight)
        out[i] = acc / norm
    return out


def mean_band(
    curves: list[tuple[np.ndarray, np.ndarray]], points: int = 100
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Curves of several seeds on a common step grid (over the steps all of them cover): (steps, mean, std)."""
    curves = [(s, v) for s, v in curves if len(s) > 0]
    if not curves:
        raise ValueError("no curve has any point")
    lo = max(float(s.min()) for s, _ in curves)
    hi = min(float(s.max()) for s, _ in curves)
    grid = np.linspace(lo, hi, points) if hi > lo else np.array([lo])
    values = np.stack([np.interp(grid, s, v) for s, v in curves])
    return grid, values.mean(0), values.std(0)


# ----- plots ------------------------------------------------------------------------------------------
def _pyplot() -> Any:
    """matplotlib's pyplot on the Agg backend (files only). Imported here, not at the module top, so that
    importing ued.report does not switch the backend of a program (a notebook) that imports it."""
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _plot_utils() -> Any:
    """rliable's plot_utils (it imports pyplot: after `_pyplot` has chosen the backend)."""
    _pyplot()
    from rliable import plot_utils

    return plot_utils


def _colors(teachers: Sequence[str]) -> dict[str, str]:
    """One matplotlib cycle color per teacher, in sweep order (the same teacher, the same color)."""
    return {t: f"C{i % 10}" for i, t in enumerate(teachers)}


def plot_curves(runs: dict[str, list[Path]], path: Path, smoothing: float = 0.6) -> bool:
    """Training return vs env steps per teacher (each seed EMA-smoothed with `smoothing`, then mean +- std
    band over seeds). False when no run logged a training return."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    drawn = False
    ylabel = "return"
    for teacher, dirs in runs.items():
        curves = []
        for d in dirs:
            found = learning_curve(d)
            if found is not None:
                ylabel, steps, values = found
                curves.append((steps, ema(values, smoothing)))
        if not curves:
            continue
        steps, mean, std = mean_band(curves)
        (line,) = ax.plot(steps, mean, label=f"{teacher} (n={len(curves)})")
        if len(curves) > 1:
            ax.fill_between(steps, mean - std, mean + std, color=line.get_color(), alpha=0.2)
        drawn = True
    if drawn:
        ax.set_xlabel("environment steps")
        ax.set_ylabel(ylabel)
        ax.set_title(f"Training return (EMA {smoothing:g}; mean ± std over seeds)")
        ax.legend()
        fig.tight_layout()
        fig.savefig(path, dpi=100)
    plt.close(fig)
    return drawn


def plot_solved(rows: list[dict[str, Any]], teachers: list[str], path: Path) -> None:
    """Per-level solved-rate bars, one bar per teacher (error bars: std over seeds); one panel per suite."""
    plt = _pyplot()
    suites = list(dict.fromkeys(r["suite"] for r in rows))
    fig, axes = plt.subplots(
        len(suites), 1, figsize=(max(6, 0.6 * _max_levels(rows) + 2), 3.5 * len(suites)), squeeze=False
    )
    for ax, suite in zip(axes[:, 0], suites):
        suite_rows = [r for r in rows if r["suite"] == suite]
        levels = list(dict.fromkeys(r["level"] for r in suite_rows))
        present = [t for t in teachers if any(r["teacher"] == t for r in suite_rows)]
        by = {(r["level"], r["teacher"]): r for r in suite_rows}
        width = 0.8 / max(1, len(present))
        x = np.arange(len(levels))
        for i, t in enumerate(present):
            means = [by[(lv, t)]["solved_rate"] if (lv, t) in by else 0.0 for lv in levels]
            stds = [by[(lv, t)]["solved_rate_std"] if (lv, t) in by else 0.0 for lv in levels]
            ax.bar(x + (i - (len(present) - 1) / 2) * width, means, width, yerr=stds, label=t, capsize=2)
        ax.set_xticks(x)
        ax.set_xticklabels(levels, rotation=45, ha="right", fontsize=8)
        ax.set_ylim(0, 1.05)
        ax.set_ylabel("solved rate")
        ax.set_title(f"Zero-shot transfer: {suite}")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _max_levels(rows: list[dict[str, Any]]) -> int:
    counts: dict[str, set] = {}
    for r in rows:
        counts.setdefault(r["suite"], set()).add(r["level"])
    return max((len(v) for v in counts.values()), default=1)


def upscale_nearest(image: np.ndarray, min_side: int = 160) -> np.ndarray:
    """An (H, W, C) picture enlarged by the smallest whole factor that makes its short side at least
    `min_side` pixels (nearest neighbour: cells stay sharp); a picture that large already is returned
    as it is."""
    short = min(image.shape[0], image.shape[1])
    if short >= min_side or short == 0:
        return image
    k = math.ceil(min_side / short)
    return np.repeat(np.repeat(image, k, axis=0), k, axis=1)


def plot_level_strip(
    runs: dict[str, list[Path]],
    path: Path,
    columns: int = 6,
    *,
    min_side: int = 160,
    max_cell: int = 480,
    dpi: int = 100,
) -> bool:
    """Levels each teacher generated over training: one row per teacher (its first seed that logged level
    images), `columns` pictures evenly spaced in training. Small pictures are enlarged (`upscale_nearest`
    to `min_side` px) and every picture gets a cell of its own pixel size, at most `max_cell` px on a
    side, so that the figure shows the levels at a readable size. False when no run logged level images."""
    rows = []
    for teacher, dirs in runs.items():
        for d in dirs:
            images = level_images(d)
            if images:
                pick = np.unique(
                    np.linspace(0, len(images) - 1, min(columns, len(images))).round().astype(int)
                )
                rows.append(
                    (teacher, [(images[i][0], upscale_nearest(images[i][1], min_side)) for i in pick])
                )
                break
    if not rows:
        return False
    plt = _pyplot()
    ncols = max(len(r[1]) for r in rows)
    scale = min(1.0, max_cell / max(max(img.shape[0], img.shape[1]) for _, imgs in rows for _, img in imgs))
    cell_w = scale * max(img.shape[1] for _, imgs in rows for _, img in imgs) / dpi
    cell_h = scale * max(img.shape[0] for _, imgs in rows for _, img in imgs) / dpi
    fig, axes = plt.subplots(
        len(rows),
        ncols,
        figsize=(0.4 + ncols * (cell_w + 0.1), 0.4 + len(rows) * (cell_h + 0.35)),
        dpi=dpi,
        squeeze=False,
    )
    for (teacher, images), ax_row in zip(rows, axes):
        for j, ax in enumerate(ax_row):
            ax.axis("off")
            if j < len(images):
                step, img = images[j]
                ax.imshow(img, interpolation="nearest")
                ax.set_title(f"{step:,}", fontsize=9)
        ax_row[0].text(
            -0.05, 0.5, teacher, transform=ax_row[0].transAxes, rotation=90, ha="right", va="center"
        )
    fig.suptitle("Generated levels over training (env steps)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return True


def plot_transfer_curves(curves: list[TransferCurve], path: Path, teachers: Sequence[str]) -> None:
    """Held-out solved rate vs env steps, one line per teacher (the mean over levels and seeds) with its
    band (pointwise 95% stratified-bootstrap interval, rliable's `plot_sample_efficiency_curve`)."""
    plt = _pyplot()
    plot_utils = _plot_utils()
    colors = _colors(teachers)
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for c in curves:
        label = f"{c.teacher} (n={len(c.runs)})"
        plot_utils.plot_sample_efficiency_curve(
            c.steps,
            {label: c.mean},
            {label: np.stack([c.low, c.high])},
            colors={label: colors[c.teacher]},
            ax=ax,
            xlabel="environment steps",
            ylabel="held-out solved rate",
            labelsize="large",
            ticklabelsize="medium",
            marker="o" if len(c.steps) < 30 else "",
        )
    ax.set_ylim(-0.02, 1.02)
    ax.set_title("Zero-shot transfer during training (mean over levels; 95% CI over seeds)", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_level_curves(curves: list[TransferCurve], path: Path, teachers: Sequence[str]) -> None:
    """Held-out solved rate vs env steps, one panel per level (the levels of the first curve; a teacher
    missing a level has no line there): each teacher's mean over seeds, its band the seeds' min to max."""
    plt = _pyplot()
    colors = _colors(teachers)
    levels = curves[0].levels
    cols = min(4, len(levels))
    rows = -(-len(levels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 2.7 * rows), squeeze=False, sharey=True)
    for k, level in enumerate(levels):
        ax = axes[k // cols][k % cols]
        for c in curves:
            if level not in c.levels:
                continue
            per_seed = c.solved[:, c.levels.index(level), :]  # [runs, T]
            ax.plot(c.steps, per_seed.mean(0), color=colors[c.teacher], label=c.teacher)
            ax.fill_between(c.steps, per_seed.min(0), per_seed.max(0), color=colors[c.teacher], alpha=0.2)
        ax.set_title(level, fontsize=9)
        ax.set_ylim(-0.02, 1.02)
        ax.tick_params(labelsize=7)
    for k in range(len(levels), rows * cols):
        axes[k // cols][k % cols].axis("off")
    axes[0][0].legend(fontsize=7)
    fig.supxlabel("environment steps", fontsize=9)
    fig.supylabel("held-out solved rate", fontsize=9)
    fig.suptitle(
        "Zero-shot transfer during training, per level (mean over seeds; band: min to max)", fontsize=10
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_profiles(profiles: dict[str, dict[str, Any]], path: Path, teachers: Sequence[str]) -> None:
    """Performance profiles (rliable's `plot_performance_profiles`), one panel per suite: the fraction of
    (run, level) solved rates above each threshold tau, with 95% stratified-bootstrap bands."""
    plt = _pyplot()
    plot_utils = _plot_utils()
    colors = _colors(teachers)
    fig, axes = plt.subplots(1, len(profiles), figsize=(5.5 * len(profiles), 4.0), squeeze=False)
    for ax, (suite, prof) in zip(axes[0], profiles.items()):
        plot_utils.plot_performance_profiles(
            prof["profiles"],
            prof["taus"],
            performance_profile_cis=prof["cis"],
            colors={t: colors[t] for t in prof["profiles"]},
            ax=ax,
            xlabel=r"solved rate $\tau$",
            ylabel=r"fraction of runs with solved rate $> \tau$",
            labelsize="large",
            ticklabelsize="medium",
            xticks=[0.0, 0.25, 0.5, 0.75, 1.0],
        )
        ax.set_title(f"Performance profile: {suite}", fontsize=10)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# ----- the report -------------------------------------------------------------------------------------
#: thresholds of the performance profiles (solved rates)
PROFILE_TAUS = np.linspace(0.0, 1.0, 41)

_PER_LEVEL_COLUMNS = [
    "suite",
    "level",
    "teacher",
    "seeds",
    "solved_rate",
    "solved_rate_std",
    "mean_return",
    "mean_return_std",
]
_AGGREGATE_COLUMNS = [
    "suite",
    "teacher",
    "seeds",
    "iqm_return",
    "iqm_return_low",
    "iqm_return_high",
    "solved_rate",
    "solved_rate_low",
    "solved_rate_high",
]
_IMPROVEMENT_COLUMNS = ["suite", "teacher_x", "teacher_y", "levels", "probability", "low", "high"]
_TRANSFER_FINAL_COLUMNS = [
    "teacher",
    "level",
    "seeds",
    "step",
    "solved_rate",
    "solved_rate_std",
    "solved_rate_low",
    "solved_rate_high",
    "return",
    "return_std",
]


def make_report(
    sweep_dir: str | os.PathLike,
    suites: Sequence[str] | None = None,
    episodes: int | None = None,
    out: str | os.PathLike | None = None,
    *,
    seed: int = 0,
    bootstrap_reps: int = 2000,
    plots: bool = True,
    progress: Callable[[str], None] | None = None,
) -> Report:
    """Evaluate every finished run of a sweep on held-out suites and write tables and plots.

    `suites` defaults to each run's env's held-out suite; `episodes` per level (None: the family's
    `eval_episodes`, dcd's 100 for mazes and CarRacing, as `ued eval`); `out` defaults to
    SWEEP/report. `seed` seeds the evaluations and every bootstrap (`bootstrap_reps` replicates each).
    Transfer over training comes from the runs' periodic evaluation scalars (`eval_scalars`); runs
    without them are left out of it, with a note in transfer.md.
    """
    sweep_dir = Path(sweep_dir)
    if episodes is not None and episodes < 1:
        raise UsageError(f"--episodes must be at least 1, got {episodes}")
    if not 0 <= seed < 2**32:
        raise UsageError(f"--seed must be in [0, 2**32), got {seed}")
    if bootstrap_reps < 10:
        raise UsageError(f"--reps (bootstrap replicates) must be at least 10, got {bootstrap_reps}")
    cells = finished_runs(sweep_dir)
    if not cells:
        raise UsageError(f"{sweep_dir} has no finished runs yet; run `ued sweep` first (or let it finish)")
    out = Path(out) if out is not None else sweep_dir / "report"
    out.mkdir(parents=True, exist_ok=True)
    report = Report(out)
    teachers = list(dict.fromkeys(c.teacher for c in cells))

    # results[suite][teacher] = list of (seed, {level: {...}})
    results: dict[str, dict[str, list[tuple[int, dict[str, dict[str, float]]]]]] = {}
    counts = set()
    for cell in cells:
        run_dir = Path(cell.run_dir)
        config = load_config(run_dir)
        run_suites = list(suites) if suites else [resolve_suite(config.env).name]
        n = episodes if episodes is not None else build_family(config).eval_episodes
        counts.add(n)
        for suite in run_suites:
            if progress is not None:
                progress(f"evaluating {cell.name} on {suite}")
            levels = evaluate_run(run_dir, suite, n, seed=seed)
            results.setdefault(suite, {}).setdefault(cell.teacher, []).append((cell.seed, levels))

    # matrices[suite][teacher] = (level names, solved [runs, levels], returns [runs, levels])
    matrices: dict[str, dict[str, tuple[list[str], np.ndarray, np.ndarray]]] = {}
    for suite, by_teacher in results.items():
        for teacher in teachers:
            runs = by_teacher.get(teacher)
            if not runs:
                continue
            level_names = list(runs[0][1])
            for _, levels in runs[1:]:
                if list(levels) != level_names:
                    raise UsageError(
                        f"runs of {teacher} were evaluated on different {suite} levels; delete their eval-{suite}.json"
                    )
            solved = np.array([[lv[name]["solved_rate"] for name in level_names] for _, lv in runs])
            returns = np.array([[lv[name]["mean_return"] for name in level_names] for _, lv in runs])
            matrices.setdefault(suite, {})[teacher] = (level_names, solved, returns)
            for j, name in enumerate(level_names):
                report.per_level.append(
                    {
                        "suite": suite,
                        "level": name,
                        "teacher": teacher,
                        "seeds": len(runs),
                        "solved_rate": float(solved[:, j].mean()),
                        "solved_rate_std": float(solved[:, j].std()),
                        "mean_return": float(returns[:, j].mean()),
                        "mean_return_std": float(returns[:, j].std()),
                    }
                )
            point_r, low_r, high_r = bootstrap_ci(returns, iqm, seed, bootstrap_reps)
            point_s, low_s, high_s = bootstrap_ci(solved, mean_score, seed, bootstrap_reps)
            report.aggregate.append(
                {
                    "suite": suite,
                    "teacher": teacher,
                    "seeds": len(runs),
                    "iqm_return": point_r,
                    "iqm_return_low": low_r,
                    "iqm_return_high": high_r,
                    "solved_rate": point_s,
                    "solved_rate_low": low_s,
                    "solved_rate_high": high_s,
                }
            )

    # probability of improvement, each pair of teachers of a suite, on their common levels
    improvement_notes = []
    for suite, by_teacher in matrices.items():
        present = list(by_teacher)
        for i, tx in enumerate(present):
            for ty in present[i + 1 :]:
                names_x, _, ret_x = by_teacher[tx]
                names_y, _, ret_y = by_teacher[ty]
                common = [n for n in names_x if n in names_y]
                if not common:
                    improvement_notes.append(f"{suite}: {tx} and {ty} share no level")
                    continue
                x = ret_x[:, [names_x.index(n) for n in common]]
                y = ret_y[:, [names_y.index(n) for n in common]]
                p, low, high = probability_of_improvement(x, y, seed, bootstrap_reps)
                report.improvement.append(
                    {
                        "suite": suite,
                        "teacher_x": tx,
                        "teacher_y": ty,
                        "levels": len(common),
                        "probability": p,
                        "low": low,
                        "high": high,
                    }
                )

    # transfer over training, from the runs' periodic evaluations
    no_eval: list[str] = []
    curve_notes: list[str] = []
    for teacher in teachers:
        scalars = {}
        for cell in cells:
            if cell.teacher != teacher:
                continue
            found = eval_scalars(cell.run_dir)
            if found.get("solved_rate"):
                scalars[cell.name] = found
            else:
                no_eval.append(cell.name)
        if not scalars:
            continue
        curve = transfer_curve(teacher, scalars, seed=seed, reps=bootstrap_reps)
        if curve is None:
            curve_notes.append(f"{teacher}: its runs' evaluations share no level or range of steps")
            continue
        report.transfer_curves.append(curve)
        report.transfer_final += curve.final

    per_level_csv = out / "transfer.csv"
    _write_csv(per_level_csv, report.per_level, _PER_LEVEL_COLUMNS)
    aggregate_csv = out / "aggregate.csv"
    _write_csv(aggregate_csv, report.aggregate, _AGGREGATE_COLUMNS)
    report.files += [per_level_csv, aggregate_csv]
    sections = [
        f"# Zero-shot transfer: {sweep_dir.name}",
        f"{len(cells)} finished runs; {' or '.join(map(str, sorted(counts)))} episodes per level.",
        f"## Aggregate (95% stratified-bootstrap CIs over seeds, rliable, {bootstrap_reps} replicates)",
        "IQM of the per-level mean returns; mean of the per-level solved rates.",
        report.aggregate_markdown(),
    ]
    if report.improvement or improvement_notes:
        sections += [
            "## Probability of improvement",
            (
                "P(X > Y): the probability that teacher X's run beats teacher Y's run on a level (per-level "
                "mean returns; Mann-Whitney U over the pairs of runs, ties count one half), averaged over "
                "levels (rliable); 95% stratified-bootstrap CIs, each teacher's runs resampled on their own. "
                "0.5 means no difference; P(Y > X) = 1 - P(X > Y)."
            ),
        ]
        if report.improvement:
            sections.append(_improvement_markdown(report.improvement))
        sections += [f"Not compared: {note}." for note in improvement_notes]
        improvement_csv = out / "improvement.csv"
        _write_csv(improvement_csv, report.improvement, _IMPROVEMENT_COLUMNS)
        report.files.append(improvement_csv)
    sections.append("## Held-out transfer over training")
    if report.transfer_curves:
        sections += [
            (
                "The runs' periodic held-out evaluations (TensorBoard `eval/<level>/solved_rate`) at the "
                "last step all of a teacher's runs reached: mean over levels and seeds, 95% "
                "stratified-bootstrap CI over seeds; per level in transfer_curves.csv, over training in "
                "transfer_curves.png."
            ),
            _transfer_final_markdown(report.transfer_final),
        ]
        transfer_final_csv = out / "transfer_curves.csv"
        _write_csv(transfer_final_csv, report.transfer_final, _TRANSFER_FINAL_COLUMNS)
        report.files.append(transfer_final_csv)
    else:
        report.skipped.append("transfer_curves.png: no run logged periodic held-out evaluations")
    if no_eval:
        sections.append(
            "Left out (no periodic held-out evaluation scalars `eval/<level>/solved_rate` in their "
            f"TensorBoard logs): {', '.join(no_eval)}."
        )
    sections += [f"Left out: {note}." for note in curve_notes]
    sections += ["## Per level", _per_level_markdown(report.per_level, teachers)]
    markdown = out / "transfer.md"
    write_text(markdown, "\n\n".join(sections) + "\n")
    report.files.insert(0, markdown)

    if plots:
        runs_by_teacher: dict[str, list[Path]] = {}
        for cell in cells:
            runs_by_teacher.setdefault(cell.teacher, []).append(Path(cell.run_dir))
        solved_png = out / "solved.png"
        plot_solved(report.per_level, teachers, solved_png)
        report.files.append(solved_png)
        for suite, by_teacher in matrices.items():
            scores = {t: solved for t, (_, solved, _) in by_teacher.items()}
            profiles, cis = performance_profile(scores, PROFILE_TAUS, seed, bootstrap_reps)
            report.profiles[suite] = {"taus": PROFILE_TAUS, "profiles": profiles, "cis": cis}
        profile_png = out / "profile.png"
        plot_profiles(report.profiles, profile_png, teachers)
        report.files.append(profile_png)
        curves_png = out / "curves.png"
        if plot_curves(runs_by_teacher, curves_png):
            report.files.append(curves_png)
        else:
            report.skipped.append("curves.png: no run logged a training-return scalar")
        if report.transfer_curves:
            transfer_png = out / "transfer_curves.png"
            plot_transfer_curves(report.transfer_curves, transfer_png, teachers)
            report.files.append(transfer_png)
            if report.transfer_curves[0].levels != [MEAN_LEVEL]:
                levels_png = out / "transfer_levels.png"
                plot_level_curves(report.transfer_curves, levels_png, teachers)
                report.files.append(levels_png)
        strip_png = out / "levels.png"
        if plot_level_strip(runs_by_teacher, strip_png):
            report.files.append(strip_png)
        else:
            report.skipped.append("levels.png: no run logged level images")
    return report
