"""Zero-shot transfer evaluation: a trained student plays held-out levels it never trained on.

All (level, episode) pairs are played in the family's evaluation vector env
(`family.make_vector_env(n, evaluation=True)`: e.g. CarRacing's raw game reward, no early stop), at most
`family.eval_batch_size` at a time (maze: 512 in one batched tensor env; CarRacing: a few processes per
core); each sub-env plays exactly one episode. Pairs are batched longest episode limit first
(`family.episode_limit`), so that sub-envs which finished early idle little. The policy is stochastic by
default, as in the published evaluations; `deterministic=True` takes the most likely action instead.

An entry may be a fixed level or a `ued.levels.Procedural` one: then every episode plays a fresh draw,
from `entry_rng(seed, position)`, so N episodes are N layouts, reproducible from the seed.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ued.checkpoint import CHECKPOINT_NAME, load_checkpoint
from ued.config import TrainConfig, load_config
from ued.environments.suites import resolve_suite
from ued.errors import UsageError
from ued.levels import LevelFamily, draw_levels, entry_rng, make_family
from ued.models import Policy, deterministic_action, make_student
from ued.packed_linear import frozen_weights
from ued.run import build_family
from ued.threads import check_device


@dataclass
class LevelScore:
    """One row of an evaluation: a level's mean episode return and solved rate (return > 0)."""

    name: str
    mean_return: float
    solved_rate: float
    episodes: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "level": self.name,
            "mean_return": self.mean_return,
            "solved_rate": self.solved_rate,
            "episodes": self.episodes,
        }


def overall(rows: list[LevelScore], excludes: frozenset[str] | set[str] = frozenset()) -> LevelScore:
    """The mean over levels (each level weighs the same), leaving out levels named in `excludes` (a
    family's `mean_excludes`: levels the published mean leaves out)."""
    rows = [r for r in rows if r.name not in excludes]
    if not rows:
        return LevelScore("overall", float("nan"), float("nan"), 0)
    return LevelScore(
        "overall",
        float(np.mean([r.mean_return for r in rows])),
        float(np.mean([r.solved_rate for r in rows])),
        sum(r.episodes for r in rows),
    )


#: env steps between `play_episodes`'s progress ticks
TICK_STEPS = 200


@torch.no_grad()
@frozen_weights()
def play_episodes(
    policy: Policy,
    venv: Any,
    levels: list[Any],
    *,
    seed: int = 0,
    deterministic: bool = False,
    max_steps: int = 1_000_000,
    tick: Callable[[int], None] | None = None,
) -> np.ndarray:
    """One episode per sub-env of `venv` on `levels` (one each); returns the episode returns [N].

    Stops when every sub-env has finished an episode; `max_steps` is a safety stop for envs that never
    end an episode (unfinished episodes then count with their partial return). `tick(finished)` is called
    every `TICK_STEPS` env steps with the number of sub-envs done so far (progress of long episodes)."""
    device = next(policy.parameters()).device
    n = len(levels)
    venv.set_levels(levels)
    obs = venv.reset(seed=seed)
    state = policy.initial_state(n, device)
    done = torch.ones(n, device=device)
    returns = torch.zeros(n, device=device)
    finished = torch.zeros(n, dtype=torch.bool, device=device)
    policy.eval()
    for step in range(max_steps):
        dist, _, state = policy(obs, state, done)
        action = deterministic_action(dist) if deterministic else dist.sample()
        obs, reward, terminated, truncated = venv.step(action)
        returns += reward.to(device).float() * (~finished)
        ended = (terminated | truncated).to(device)
        finished |= ended
        done = ended.float()
        if bool(finished.all()):
            break
        if tick is not None and (step + 1) % TICK_STEPS == 0:
            tick(int(finished.sum()))
    return returns.cpu().numpy().astype(np.float64)


def eval_chunks(family: LevelFamily, jobs: list[Any], batch_size: int) -> list[list[int]]:
    """Indices of `jobs` (levels) in batches of at most `batch_size`, of near-equal sizes (so that one
    vector env serves all but maybe the last), longest `family.episode_limit` first."""
    limits = [family.episode_limit(lvl) for lvl in jobs]
    order = sorted(range(len(jobs)), key=lambda i: -(limits[i] or 0))  # stable: unknown limits keep order
    count = math.ceil(len(jobs) / batch_size)
    size = math.ceil(len(jobs) / count)
    return [order[i : i + size] for i in range(0, len(jobs), size)]


def evaluate(
    policy: Policy,
    family: LevelFamily,
    named_levels: list[tuple[str, Any]],
    episodes: int = 10,
    seed: int = 0,
    device: str = "cpu",
    *,
    deterministic: bool = False,
    max_envs: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[LevelScore]:
    """Play `episodes` episodes on each named entry and score them, one row per entry in order (add
    `overall(rows)` for the mean). Seeded: the same seed gives the same numbers.

    An entry is a level or a `Procedural`: each of its episodes plays its own draw, the k-th entry's
    drawn with `entry_rng(seed, k)` (independent of batch sizes and of the other entries).

    At most `max_envs` (default `family.eval_batch_size`) episodes run at once, in the family's evaluation
    env; `progress(done, total)` is called after each batch with the episodes played so far, and every
    `TICK_STEPS` env steps within a batch (long episodes), with the episodes finished so far."""
    if episodes < 1:
        raise UsageError(f"episodes must be at least 1, got {episodes}")
    if seed < 0:
        raise UsageError(f"the evaluation seed must be >= 0, got {seed}")
    if not named_levels:
        raise UsageError("no levels to evaluate; give a suite or a level file")
    if max_envs is None:
        max_envs = int(family.eval_batch_size)
    if max_envs < 1:
        raise UsageError(f"max_envs must be at least 1, got {max_envs}")
    policy = policy.to(device)
    jobs = [
        lvl
        for k, (_, entry) in enumerate(named_levels)
        for lvl in draw_levels(entry, episodes, entry_rng(seed, k))
    ]
    rng = np.random.default_rng(seed)
    returns = np.zeros(len(jobs))
    venv = None
    done = 0
    # the policy's action sampling draws from torch's global RNG: fork it, so that evaluating (during
    # training, too) never moves the caller's random stream
    devices = [torch.device(device)] if torch.device(device).type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        try:
            for chunk in eval_chunks(family, jobs, max_envs):
                if venv is None or venv.num_envs != len(chunk):
                    if venv is not None:
                        venv.close()
                    venv = family.make_vector_env(len(chunk), seed=seed, device=device, evaluation=True)
                before = done
                tick = None if progress is None else (lambda k, b=before: progress(b + k, len(jobs)))
                returns[chunk] = play_episodes(
                    policy,
                    venv,
                    [jobs[i] for i in chunk],
                    seed=int(rng.integers(2**31)),
                    deterministic=deterministic,
                    tick=tick,
                )
                done += len(chunk)
                if progress is not None:
                    progress(done, len(jobs))
        finally:
            if venv is not None:
                venv.close()
    rows = []
    for i, (name, _) in enumerate(named_levels):
        r = returns[i * episodes : (i + 1) * episodes]
        rows.append(LevelScore(name, float(r.mean()), float((r > 0).mean()), episodes))
    return rows


def held_out_levels(config: TrainConfig, family: LevelFamily) -> tuple[list[tuple[str, Any]], str]:
    """(named levels, their source) a run evaluates on during training: `eval_levels` (a file or folder),
    else the suite `eval_suite`, else the family's default suite."""
    if config.eval_levels is not None:
        return family.load_levels(config.eval_levels), str(config.eval_levels)
    suite = resolve_suite(config.env, config.eval_suite)
    return suite.levels(), suite.name


@dataclass(frozen=True)
class PeriodicEvaluation:
    """Held-out evaluation during training: every `interval` updates, each student role plays `episodes`
    episodes on each of `levels` (the same code as `ued eval`). The seed is fixed for the run, so every
    evaluation plays the same procedural draws and a curve shows the student changing, not the levels;
    the evaluation's random stream is its own (`evaluate` forks torch's RNG), so turning it on leaves
    training bit for bit as it was."""

    levels: list[tuple[str, Any]]
    interval: int
    episodes: int
    seed: int
    source: str

    @classmethod
    def plan(
        cls, config: TrainConfig, family: LevelFamily, steps_per_update: int
    ) -> PeriodicEvaluation | None:
        """The run's periodic evaluation, or None when it is off (`eval_interval` 0, or no interval given
        and the family has no default; an explicit interval without levels to play is a UsageError)."""
        interval = config.eval_interval
        if interval is None:
            steps = family.periodic_eval_steps
            interval = 0 if steps is None else max(1, round(steps / steps_per_update))
        if interval == 0:
            return None
        nothing_named = config.eval_levels is None and config.eval_suite is None
        if nothing_named and config.eval_interval is None:
            try:
                resolve_suite(config.env, None)  # a plugin's own suite counts too
            except UsageError:
                return None  # a family without held-out levels: no periodic evaluation by default
        levels, source = held_out_levels(config, family)
        return cls(levels, interval, config.eval_episodes, config.seed, source)

    def record(self) -> dict[str, Any]:
        """The plan as config.json records it."""
        return {
            "interval_updates": self.interval,
            "source": self.source,
            "levels": len(self.levels),
            "episodes": self.episodes,
            "seed": self.seed,
        }

    def due(self, update: int) -> bool:
        return update % self.interval == 0

    def scalars(self, policies: dict[str, Policy], family: LevelFamily, device: str) -> dict[str, float]:
        """Evaluate every role's policy -> TensorBoard scalars: eval/<level>/solved_rate, .../return and
        eval/mean/... for the protagonist, eval_<role>/... for the others."""
        out: dict[str, float] = {}
        for role, policy in policies.items():
            prefix = "eval" if role == "protagonist" else f"eval_{role}"
            rows = evaluate(policy, family, self.levels, self.episodes, self.seed, device)
            for row in [*rows, overall(rows, family.mean_excludes)]:
                name = "mean" if row.name == "overall" else row.name
                out[f"{prefix}/{name}/solved_rate"] = row.solved_rate
                out[f"{prefix}/{name}/return"] = row.mean_return
        return out


def load_student(
    run_dir: str | os.PathLike,
    role: str = "protagonist",
    device: str = "cpu",
    env_options: dict[str, Any] | None = None,
) -> tuple[Policy, LevelFamily, TrainConfig]:
    """The trained policy of `role` from a run directory (config.json + checkpoint.pt), with its family;
    `env_options` override the run's family options for evaluation (`ued eval --env-option`; the returned
    config keeps the run's own)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UsageError(f"run directory {run_dir} does not exist; give the --run-dir of a `ued train` run")
    config = load_config(run_dir)
    check_device(device)
    state = load_checkpoint(run_dir / CHECKPOINT_NAME, map_location=device)
    students = state.get("students", {})
    if role not in students:
        raise UsageError(
            f"run {run_dir} has no {role!r} student; choose one of: {', '.join(sorted(students)) or '(none)'}"
        )
    if env_options:
        family = make_family(config.env, **{**config.env_options, **env_options})
    else:
        family = build_family(config)
    policy = make_student(family, config.student, config.student_options).to(device)
    try:
        policy.load_state_dict(students[role]["policy"])
    except (RuntimeError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0][:200]
        raise UsageError(
            f"the {role!r} weights in {run_dir} do not fit the {config.env!r} student network ({first}); "
            "was the run made by other settings or another version of ued?"
        ) from exc
    policy.eval()
    return policy, family, config


def format_table(
    rows: list[LevelScore],
    total: LevelScore | None = None,
    baseline: list[LevelScore] | None = None,
    excludes: frozenset[str] | set[str] = frozenset(),
) -> str:
    """An aligned text table: level, mean return, solved rate, episodes (and the overall row); with
    `baseline` (one row per level, e.g. a random policy's), its return and solved rate beside them. Levels
    named in `excludes` (left out of the overall row) are marked with a `*` and a footnote."""
    all_rows = rows + ([total] if total is not None else [])
    base = list(baseline) + ([overall(baseline, excludes)] if total is not None else []) if baseline else None
    width = max([len("level")] + [len(r.name) + 2 for r in all_rows])
    header = f"{'level':<{width}}  {'mean return':>11}  {'solved rate':>11}"
    if base is not None:
        header += f"  {'random ret':>10}  {'random solved':>13}"
    header += f"  {'episodes':>8}"

    def line(r: LevelScore, b: LevelScore | None) -> str:
        name = f"{r.name} *" if r.name in excludes and r is not total else r.name
        text = f"{name:<{width}}  {r.mean_return:>11.3f}  {r.solved_rate:>11.2f}"
        if b is not None:
            text += f"  {b.mean_return:>10.3f}  {b.solved_rate:>13.2f}"
        return text + f"  {r.episodes:>8d}"

    lines = [header, "-" * len(header)]
    lines += [line(r, base[i] if base else None) for i, r in enumerate(rows)]
    if total is not None:
        lines.append("-" * len(header))
        lines.append(line(total, base[-1] if base else None))
        if any(r.name in excludes for r in rows):
            lines.append("* not in the overall row, as in the published mean (the family's mean_excludes)")
    return "\n".join(lines)


def evaluate_suite(
    run_dir: str | os.PathLike,
    suite: str | None = None,
    *,
    episodes: int = 10,
    seed: int = 0,
    role: str = "protagonist",
    device: str = "cpu",
    deterministic: bool = False,
) -> list[LevelScore]:
    """A run's student on a held-out suite (default: its family's transfer suite): one row per level."""
    policy, family, config = load_student(run_dir, role, device=device)
    s = resolve_suite(config.env, suite)
    return evaluate(policy, family, s.levels(), episodes, seed, device, deterministic=deterministic)
