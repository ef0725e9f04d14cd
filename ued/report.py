"""Tables and plots of a finished (or partly finished) sweep: zero-shot transfer per level and teacher,
aggregates with bootstrap confidence intervals over seeds, learning curves and generated-level strips.

Aggregates follow rliable (Agarwal et al., 2021): the interquartile mean (IQM) of per-level returns and
the mean solved rate, each with a 95% stratified-bootstrap confidence interval over seeds (runs are
resampled with replacement independently for every level). A few lines of numpy; rliable is not needed.

Files written (default: SWEEP/report/):
    transfer.md    per-level table (solved rate and return, mean over seeds) and the aggregate table
    transfer.csv   one row per (suite, level, teacher): seeds, solved rate and return (mean, std)
    aggregate.csv  one row per (suite, teacher): IQM return and mean solved rate with 95% CIs
    curves.png     training return vs environment steps per teacher (mean +- std over seeds)
    solved.png     per-level solved-rate bars per teacher (error bars: std over seeds)
    levels.png     levels each teacher generated over training (from the runs' TensorBoard images)
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from ued.checkpoint import CHECKPOINT_NAME
from ued.config import load_config
from ued.environments.suites import resolve_suite
from ued.errors import UsageError
from ued.evaluation import evaluate_suite
from ued.io import write_json, write_text
from ued.sweep import finished_runs


# ----- statistics (pure functions) --------------------------------------------------------------------
def iqm(
    scores: np.ndarray | Sequence[float], axis: int | tuple[int, ...] | None = None
) -> np.ndarray | float:
    """Interquartile mean: the mean of the middle 50% of the scores (over all of them when axis is None).

    Cuts int(0.25 * n) scores from each end of the sorted scores, like `scipy.stats.trim_mean(x, 0.25)`
    that rliable uses. `axis` may be a tuple (the scores along those axes are pooled).
    """
    x = np.asarray(scores, dtype=np.float64)
    if axis is None:
        x = x.reshape(-1)
        axis = 0
    elif isinstance(axis, tuple):
        axes = tuple(a % x.ndim for a in axis)
        rest = [a for a in range(x.ndim) if a not in axes]
        x = np.transpose(x, rest + list(axes)).reshape([x.shape[a] for a in rest] + [-1])
        axis = -1
    n = x.shape[axis]
    if n == 0:
        raise ValueError("iqm of an empty set of scores")
    cut = int(0.25 * n)
    x = np.sort(x, axis=axis)
    kept = np.take(x, np.arange(cut, n - cut), axis=axis)
    out = kept.mean(axis=axis)
    return float(out) if np.ndim(out) == 0 else out


def mean_score(scores: np.ndarray, axis: int | tuple[int, ...] | None = None) -> np.ndarray | float:
    """Plain mean (the aggregate for solved rates)."""
    out = np.asarray(scores, dtype=np.float64).mean(axis=axis)
    return float(out) if np.ndim(out) == 0 else out


def stratified_bootstrap(
    scores: np.ndarray,
    statistic: Callable[..., Any],
    rng: np.random.Generator,
    reps: int = 2000,
) -> np.ndarray:
    """Bootstrap replicates of `statistic` on a [runs, tasks] score matrix.

    Each replicate resamples the runs with replacement *within every task (column) separately* (rliable's
    stratified bootstrap) and applies `statistic(sample, axis=(1, 2))` to the [reps, runs, tasks] stack.
    Returns the `reps` replicate values.
    """
    x = np.asarray(scores, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"scores must be a non-empty [runs, tasks] matrix, got shape {x.shape}")
    runs, tasks = x.shape
    idx = rng.integers(0, runs, size=(reps, runs, tasks))
    sample = x[idx, np.arange(tasks)[None, None, :]]
    return np.asarray(statistic(sample, axis=(1, 2)), dtype=np.float64)


def bootstrap_ci(
    scores: np.ndarray,
    statistic: Callable[..., Any],
    rng: np.random.Generator,
    reps: int = 2000,
    confidence: float = 0.95,
) -> tuple[float, float, float]:
    """(point estimate, low, high): `statistic` of the [runs, tasks] matrix and the percentile interval of
    its stratified-bootstrap distribution."""
    x = np.asarray(scores, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    point = float(statistic(x, axis=(0, 1)))
    reps_values = stratified_bootstrap(x, statistic, rng, reps)
    alpha = (1.0 - confidence) / 2.0
    low, high = np.quantile(reps_values, [alpha, 1.0 - alpha])
    return point, float(low), float(high)


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
    files: list[Path] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    """runs left out, with the reason"""

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


def learning_curve(
    run_dir: str | os.PathLike, tags: Sequence[str] = CURVE_TAGS
) -> tuple[str, np.ndarray, np.ndarray] | None:
    """(tag, env steps, values) of the first of `tags` the run logged, or None."""
    acc = _accumulator(Path(run_dir))
    available = set(acc.Tags().get("scalars", []))
    for tag in tags:
        if tag in available:
            by_step = {
                int(e.step): float(e.value) for e in acc.Scalars(tag)
            }  # a resumed run logs a step again
            steps = np.array(sorted(by_step), dtype=float)
            return tag, steps, np.array([by_step[int(s)] for s in steps])
    return None


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

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


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


def plot_level_strip(runs: dict[str, list[Path]], path: Path, columns: int = 6) -> bool:
    """Levels each teacher generated over training: one row per teacher (its first seed that logged level
    images), `columns` pictures evenly spaced in training. False when no run logged level images."""
    rows = []
    for teacher, dirs in runs.items():
        for d in dirs:
            images = level_images(d)
            if images:
                pick = np.unique(
                    np.linspace(0, len(images) - 1, min(columns, len(images))).round().astype(int)
                )
                rows.append((teacher, [images[i] for i in pick]))
                break
    if not rows:
        return False
    plt = _pyplot()
    ncols = max(len(r[1]) for r in rows)
    fig, axes = plt.subplots(len(rows), ncols, figsize=(1.6 * ncols, 1.8 * len(rows)), squeeze=False)
    for (teacher, images), ax_row in zip(rows, axes):
        for j, ax in enumerate(ax_row):
            ax.axis("off")
            if j < len(images):
                step, img = images[j]
                ax.imshow(img)
                ax.set_title(f"{step:,}", fontsize=7)
        ax_row[0].text(
            -0.1, 0.5, teacher, transform=ax_row[0].transAxes, rotation=90, ha="right", va="center"
        )
    fig.suptitle("Generated levels over training (env steps)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


# ----- the report -------------------------------------------------------------------------------------
def make_report(
    sweep_dir: str | os.PathLike,
    suites: Sequence[str] | None = None,
    episodes: int = 10,
    out: str | os.PathLike | None = None,
    *,
    seed: int = 0,
    bootstrap_reps: int = 2000,
    plots: bool = True,
    progress: Callable[[str], None] | None = None,
) -> Report:
    """Evaluate every finished run of a sweep on held-out suites and write tables and plots.

    `suites` defaults to each run's env's held-out suite; `episodes` per level; `out` defaults to
    SWEEP/report. The bootstrap uses `numpy.random.default_rng(seed)`.
    """
    sweep_dir = Path(sweep_dir)
    if episodes < 1:
        raise UsageError(f"--episodes must be at least 1, got {episodes}")
    cells = finished_runs(sweep_dir)
    if not cells:
        raise UsageError(f"{sweep_dir} has no finished runs yet; run `ued sweep` first (or let it finish)")
    out = Path(out) if out is not None else sweep_dir / "report"
    out.mkdir(parents=True, exist_ok=True)
    report = Report(out)
    teachers = list(dict.fromkeys(c.teacher for c in cells))

    # results[suite][teacher] = list of (seed, {level: {...}})
    results: dict[str, dict[str, list[tuple[int, dict[str, dict[str, float]]]]]] = {}
    for cell in cells:
        run_dir = Path(cell.run_dir)
        run_suites = list(suites) if suites else [resolve_suite(load_config(run_dir).env).name]
        for suite in run_suites:
            if progress is not None:
                progress(f"evaluating {cell.name} on {suite}")
            levels = evaluate_run(run_dir, suite, episodes, seed=seed)
            results.setdefault(suite, {}).setdefault(cell.teacher, []).append((cell.seed, levels))

    rng = np.random.default_rng(seed)
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
            point_r, low_r, high_r = bootstrap_ci(returns, iqm, rng, bootstrap_reps)
            point_s, low_s, high_s = bootstrap_ci(solved, mean_score, rng, bootstrap_reps)
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

    per_level_csv = out / "transfer.csv"
    _write_csv(
        per_level_csv,
        report.per_level,
        [
            "suite",
            "level",
            "teacher",
            "seeds",
            "solved_rate",
            "solved_rate_std",
            "mean_return",
            "mean_return_std",
        ],
    )
    aggregate_csv = out / "aggregate.csv"
    _write_csv(
        aggregate_csv,
        report.aggregate,
        [
            "suite",
            "teacher",
            "seeds",
            "iqm_return",
            "iqm_return_low",
            "iqm_return_high",
            "solved_rate",
            "solved_rate_low",
            "solved_rate_high",
        ],
    )
    markdown = out / "transfer.md"
    write_text(
        markdown,
        "\n\n".join(
            [
                f"# Zero-shot transfer: {sweep_dir.name}",
                f"{len(cells)} finished runs; {episodes} episodes per level.",
                "## Aggregate (95% stratified-bootstrap CIs over seeds)",
                "IQM of the per-level mean returns; mean of the per-level solved rates.",
                report.aggregate_markdown(),
                "## Per level",
                _per_level_markdown(report.per_level, teachers),
            ]
        )
        + "\n",
    )
    report.files += [markdown, per_level_csv, aggregate_csv]

    if plots:
        runs_by_teacher: dict[str, list[Path]] = {}
        for cell in cells:
            runs_by_teacher.setdefault(cell.teacher, []).append(Path(cell.run_dir))
        solved_png = out / "solved.png"
        plot_solved(report.per_level, teachers, solved_png)
        report.files.append(solved_png)
        curves_png = out / "curves.png"
        if plot_curves(runs_by_teacher, curves_png):
            report.files.append(curves_png)
        else:
            report.skipped.append("curves.png: no run logged a training-return scalar")
        strip_png = out / "levels.png"
        if plot_level_strip(runs_by_teacher, strip_png):
            report.files.append(strip_png)
        else:
            report.skipped.append("levels.png: no run logged level images")
    return report
