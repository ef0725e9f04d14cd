"""The training loop: the only place that wires a teacher to its students.

Per update: the teacher proposes `num_envs` levels, every student role rolls out `num_steps` steps on those
same levels, the teacher learns from the results, and (unless the teacher says not to) the students take a
PPO step. `total_steps` counts the protagonist's environment steps, the literature's convention (a PAIRED
run therefore simulates about twice as many steps, for protagonist and antagonist).

A run directory holds `config.json` (written at the start), TensorBoard event files, `checkpoint.pt`
(atomic, every `checkpoint_interval` updates and at the end) and `summary.json` (at the end).
"""

from __future__ import annotations

import ast
import inspect
import json
import math
import os
import signal
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ued.config import PPOConfig, merge
from ued.errors import UsageError

if TYPE_CHECKING:
    from ued.levels import LevelFamily, LevelResults

# torch, gymnasium (ued.levels) and the modules that need them are imported inside the functions below, so
# that `ued --help` (which reads TrainConfig's field docs) starts fast.
CHECKPOINT_NAME = "checkpoint.pt"  # == ued.checkpoint.CHECKPOINT_NAME

CONFIG_NAME = "config.json"
SUMMARY_NAME = "summary.json"
BACKENDS = ("default", "gym")


@dataclass
class TrainConfig:
    """Everything that defines a training run (saved as config.json in the run directory)."""

    env: str = "maze"
    """level family (environment) to train on, e.g. maze or carracing"""
    env_options: dict[str, Any] = field(default_factory=dict)
    """options of the level family, e.g. {"max_walls": 25}"""
    teacher: str = "dr"
    """teacher (UED algorithm): dr, paired, clutr, plr, ..."""
    teacher_options: dict[str, Any] = field(default_factory=dict)
    """overrides of the teacher's config"""
    total_steps: int = 200_000
    """protagonist environment steps to train for (the literature's convention)"""
    seed: int = 0
    """run seed: same seed, same levels, weights and results on the same machine"""
    device: str = "cpu"
    """torch device for the networks and batched environments (cpu, cuda, cuda:1, ...)"""
    num_envs: int | None = None
    """parallel environments = levels per rollout (default: the family's published setting)"""
    num_steps: int | None = None
    """steps per environment per rollout (default: the family's published setting)"""
    ppo: dict[str, Any] = field(default_factory=dict)
    """overrides of the students' PPO config (lr, gamma, epochs, ...)"""
    run_dir: str | None = None
    """run directory (default: runs/<teacher>-<env>-seed<seed>)"""
    log_interval: int = 1
    """write TensorBoard scalars every this many updates"""
    checkpoint_interval: int = 10
    """save a checkpoint every this many updates (and always at the end)"""
    image_interval: int = 50
    """log a picture grid of proposed levels every this many updates (0 = never)"""
    backend: str = "default"
    """students' vector env: default (the family's, e.g. batched tensor mazes) or gym (the reference
    gymnasium vector env of family.make_env)"""

    threads: int | None = None
    """torch CPU threads (default: 1 on device cpu, where the small maze networks run fastest on one thread
    of a 2-core machine; more can help big networks on many free cores; torch's choice on cuda)"""

    def resolved_run_dir(self) -> Path:
        return Path(self.run_dir or f"runs/{self.teacher}-{self.env}-seed{self.seed}")


def field_docs(cls: type) -> dict[str, str]:
    """The docstring under each field of dataclass `cls` (its `--help` text), read from the source."""
    try:
        tree = ast.parse(inspect.getsource(cls))
    except (OSError, TypeError):
        return {}
    docs: dict[str, str] = {}
    body = tree.body[0].body  # type: ignore[attr-defined]
    for node, nxt in zip(body, body[1:] + [None], strict=True):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(nxt, ast.Expr)
            and isinstance(nxt.value, ast.Constant)
            and isinstance(nxt.value.value, str)
        ):
            docs[node.target.id] = " ".join(nxt.value.value.split())
    return docs


def config_from_dict(data: dict[str, Any], where: str = "config") -> TrainConfig:
    """A TrainConfig from a plain dict (config.json, a TOML file); unknown keys raise UsageError."""
    return merge(TrainConfig(), dict(data), where)


def load_config(run_dir: str | os.PathLike) -> TrainConfig:
    """The TrainConfig saved in `run_dir/config.json`."""
    path = Path(run_dir) / CONFIG_NAME
    if not path.is_file():
        raise UsageError(
            f"{run_dir} is not a ued run directory (no {CONFIG_NAME}); train one with `ued train`"
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise UsageError(f"cannot read {path}: {exc}; the run directory is damaged") from exc
    if not isinstance(data, dict):
        raise UsageError(f"{path} does not hold a config object; the run directory is damaged")
    return config_from_dict(data, where=str(path))


def _write_json(path: Path, data: Any) -> None:
    """Atomic JSON write (temp file + os.replace)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)


def ppo_config_for(family: LevelFamily, config: TrainConfig) -> PPOConfig:
    """The students' PPO config: the family's published defaults, then `config.ppo`, num_envs, num_steps."""
    ppo = merge(family.default_ppo(), config.ppo, "ppo")
    if config.num_envs is not None:
        ppo = merge(ppo, {"num_envs": config.num_envs})
    if config.num_steps is not None:
        ppo = merge(ppo, {"num_steps": config.num_steps})
    return ppo


def build_family(config: TrainConfig) -> LevelFamily:
    """The run's level family; unknown or bad options are a UsageError naming the family's options."""
    from ued.levels import make_family

    try:
        return make_family(config.env, **config.env_options)
    except TypeError as exc:
        raise UsageError(f"bad option for environment {config.env!r}: {exc}; check the [env] table") from exc


def teacher_config_for(config: TrainConfig) -> Any:
    """The teacher's config: its `config_class` defaults with `config.teacher_options` merged over them
    (None for a teacher without options); unknown keys are a UsageError listing the valid ones."""
    from ued.teachers import teacher_class

    cls = teacher_class(config.teacher)
    if cls.config_class is None:
        if config.teacher_options:
            raise UsageError(
                f"teacher {config.teacher!r} takes no options, got {', '.join(sorted(config.teacher_options))}; "
                "remove them (--teacher-option / the [teacher] table)"
            )
        return None
    teacher_config = merge(cls.config_class(), config.teacher_options, f"teacher {config.teacher!r}")
    # a teacher config with a `cache_dir` field left unset keeps its own files in the run directory
    if getattr(teacher_config, "cache_dir", "") is None and config.run_dir:
        teacher_config.cache_dir = str(config.run_dir)
    return teacher_config


def build_teacher(family: LevelFamily, config: TrainConfig) -> Any:
    """The run's teacher with its config (class defaults + `config.teacher_options`)."""
    from ued.teachers import teacher_class

    cls = teacher_class(config.teacher)
    return cls(family, teacher_config_for(config), seed=config.seed, device=config.device)


def teacher_levels(run_dir: str | os.PathLike, count: int) -> tuple[LevelFamily, list[Any]]:
    """`count` levels that the trained teacher of a run proposes now (from its checkpoint): what PAIRED's
    adversary writes, what PLR replays, ... (`ued render --run`)."""
    from ued.checkpoint import load_checkpoint

    config = load_config(run_dir)
    family = build_family(config)
    teacher = build_teacher(family, config)
    teacher.load_state_dict(load_checkpoint(Path(run_dir) / CHECKPOINT_NAME)["teacher"])
    return family, teacher.propose(count)


def make_vector_env(family: LevelFamily, backend: str, num_envs: int, seed: int, device: str) -> Any:
    """The students' `LevelVectorEnv` on the chosen backend."""
    if backend == "default":
        return family.make_vector_env(num_envs, seed=seed, device=device)
    if backend == "gym":
        from ued.vecenv import GymLevelVectorEnv

        return GymLevelVectorEnv(family, num_envs, seed=seed, device=device)
    raise UsageError(f"unknown backend {backend!r}; choose one of: {', '.join(BACKENDS)}")


def validate(config: TrainConfig) -> None:
    """Raise UsageError on settings that cannot work (before anything is built or written)."""
    for name in ("total_steps", "log_interval", "checkpoint_interval"):
        if int(getattr(config, name)) < 1:
            raise UsageError(f"{name} must be at least 1, got {getattr(config, name)}")
    for name in ("num_envs", "num_steps"):
        value = getattr(config, name)
        if value is not None and int(value) < 1:
            raise UsageError(f"{name} must be at least 1, got {value}")
    if config.threads is not None and int(config.threads) < 1:
        raise UsageError(f"threads must be at least 1, got {config.threads}")
    if config.image_interval < 0:
        raise UsageError(f"image_interval must be 0 (never) or more, got {config.image_interval}")
    if config.backend not in BACKENDS:
        raise UsageError(f"unknown backend {config.backend!r}; choose one of: {', '.join(BACKENDS)}")
    for name in ("env_options", "teacher_options", "ppo"):
        if not isinstance(getattr(config, name), dict):
            raise UsageError(f"{name} must be a table of KEY = VALUE settings, got {getattr(config, name)!r}")
    # unknown or bad env / teacher / ppo options fail here, before anything is built, written or trained
    family = build_family(config)
    ppo_config_for(family, config)
    teacher_config_for(config)
    import torch

    try:
        torch.device(config.device)
    except RuntimeError as exc:
        raise UsageError(f"unknown device {config.device!r}; use cpu, cuda or cuda:N") from exc
    if torch.device(config.device).type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"device {config.device!r} asked for but CUDA is not available; use --device cpu")


def resolved_threads(config: TrainConfig) -> int | None:
    """torch CPU threads for the run: `config.threads`, else 1 on device cpu (small networks; measured faster
    than 2 threads on a 2-core machine, and far faster when the cores are busy), else None (torch's choice)."""
    if config.threads is not None:
        return int(config.threads)
    return 1 if str(config.device).split(":")[0] == "cpu" else None


def apply_threads(threads: int | None, device: str = "cpu") -> int | None:
    """Set torch's CPU threads as `resolved_threads` picks them (`threads`, else 1 on cpu, else torch's
    choice) and return the count set; a count below 1 is a UsageError. Used by every command that runs
    networks, so they all behave alike."""
    if threads is not None and int(threads) < 1:
        raise UsageError(f"--threads must be at least 1, got {threads}")
    count = resolved_threads(TrainConfig(device=device, threads=threads))
    if count is not None:
        import torch

        torch.set_num_threads(count)
    return count


def level_grid(images: list[np.ndarray], columns: int = 4, pad: int = 4) -> np.ndarray:
    """Tile RGB pictures (H, W, 3) of any sizes into one uint8 image, white padding between them."""
    h = max(im.shape[0] for im in images)
    w = max(im.shape[1] for im in images)
    rows = math.ceil(len(images) / columns)
    cols = min(columns, len(images))
    grid = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, 3), 255, dtype=np.uint8)
    for i, im in enumerate(images):
        r, c = divmod(i, columns)
        y, x = pad + r * (h + pad), pad + c * (w + pad)
        grid[y : y + im.shape[0], x : x + im.shape[1]] = im[..., :3]
    return grid


class _Run:
    """The objects of one training run, and their checkpoint form."""

    def __init__(self, config: TrainConfig):
        import torch

        from ued.student import Student

        self.config = config
        torch.manual_seed(config.seed)
        self.family = build_family(config)
        self.ppo_config = ppo_config_for(self.family, config)
        self.teacher = build_teacher(self.family, config)
        roles = tuple(self.teacher.roles)
        self.students: dict[str, Student] = {}
        self.venvs: dict[str, Any] = {}
        for i, role in enumerate(roles):
            policy = self.family.make_student(config.device)
            self.students[role] = Student(policy, self.ppo_config, config.device, seed=config.seed + 1 + i)
            self.venvs[role] = make_vector_env(
                self.family,
                config.backend,
                self.ppo_config.num_envs,
                config.seed + 1000 * (i + 1),
                config.device,
            )
        self.update = 0
        self.steps = 0
        self.trained_updates = 0  # updates in which the students took a PPO step

    def state_dict(self) -> dict[str, Any]:
        import torch

        return {
            "config": asdict(self.config),
            "update": self.update,
            "steps": self.steps,
            "trained_updates": self.trained_updates,
            "students": {role: s.state_dict() for role, s in self.students.items()},
            "teacher": self.teacher.state_dict(),
            "torch_rng": torch.get_rng_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        import torch

        missing = set(self.students) - set(state.get("students", {}))
        if missing:
            raise UsageError(
                f"the checkpoint has no student for role(s) {sorted(missing)}; was it another teacher?"
            )
        for role, student in self.students.items():
            student.load_state_dict(state["students"][role])
        self.teacher.load_state_dict(state["teacher"])
        torch.set_rng_state(state["torch_rng"])
        self.update = int(state["update"])
        self.steps = int(state["steps"])
        self.trained_updates = int(state.get("trained_updates", self.update))

    def close(self) -> None:
        for venv in self.venvs.values():
            venv.close()


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during `train`: the last completed update was checkpointed (`saved` False when no update
    completed since the run started or resumed, so there was nothing new to save)."""

    def __init__(self, run_dir: Path, update: int, steps: int, saved: bool):
        super().__init__(f"training interrupted after update {update} ({steps} steps)")
        self.run_dir, self.update, self.steps, self.saved = run_dir, update, steps, saved

    def advice(self) -> str:
        """What happened and how to go on, for the user."""
        if self.update == 0:
            return f"interrupted before the first update finished; nothing to resume in {self.run_dir}"
        what = "saved" if self.saved else "kept"
        return (
            f"interrupted: checkpoint of update {self.update} ({self.steps} steps) {what} in {self.run_dir}; "
            f"continue with `ued train --resume {self.run_dir}`"
        )


#: settings that must not change when a run is resumed (others, e.g. total_steps, may)
_FIXED_ON_RESUME = (
    "env",
    "env_options",
    "teacher",
    "teacher_options",
    "seed",
    "num_envs",
    "num_steps",
    "ppo",
)


def _sigterm_as_interrupt() -> Callable[[], None]:
    """Make SIGTERM (`kill`, a cluster scheduler's stop) take the Ctrl-C path, so the last completed update
    is checkpointed before the run stops; returns the function that restores the previous handler. Only
    the main thread can handle signals (elsewhere this does nothing)."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    return lambda: signal.signal(signal.SIGTERM, previous)


def train(config: TrainConfig, resume: bool = False, progress: bool = True) -> dict[str, Any]:
    """Train students against `config.teacher` on `config.env` until `config.total_steps` protagonist steps.

    A fresh run refuses a run directory that already holds a checkpoint; `resume=True` continues the
    checkpoint in `config.run_dir` (refused if there is none). Returns a summary (steps, updates, speed,
    the protagonist's last mean return and solved rate).

    Ctrl-C (KeyboardInterrupt) or SIGTERM checkpoints the last *completed* update, never a half-done one
    (an in-memory copy of its state is kept), then raises `TrainingInterrupted` (a KeyboardInterrupt).
    """
    import copy

    from torch.utils.tensorboard import SummaryWriter
    from tqdm import tqdm

    from ued.checkpoint import load_checkpoint, save_checkpoint
    from ued.ppo import PPOError

    validate(config)
    run_dir = config.resolved_run_dir()
    config.run_dir = str(run_dir)
    ckpt_path = run_dir / CHECKPOINT_NAME
    if resume:
        if not ckpt_path.is_file():
            raise UsageError(
                f"cannot resume: {run_dir} holds no {CHECKPOINT_NAME}; start a fresh run instead"
            )
        state = load_checkpoint(ckpt_path)
        saved = config_from_dict(state.get("config", {}), where=f"{ckpt_path} config")
        changed = [k for k in _FIXED_ON_RESUME if getattr(saved, k) != getattr(config, k)]
        if changed:
            raise UsageError(
                f"cannot resume {run_dir} with different {', '.join(changed)}; resume with the saved settings "
                "or start a new run in another run directory"
            )
    elif ckpt_path.exists():
        raise UsageError(
            f"{run_dir} already holds a training checkpoint; continue it with `ued train --resume {run_dir}` "
            "or choose another --run-dir"
        )

    apply_threads(config.threads, config.device)
    run = _Run(config)
    if resume:
        run.load_state_dict(state)
    run_dir.mkdir(parents=True, exist_ok=True)
    _write_json(run_dir / CONFIG_NAME, asdict(config))

    num_envs, num_steps = run.ppo_config.num_envs, run.ppo_config.num_steps
    steps_per_update = num_envs * num_steps
    # on resume, drop events logged after the checkpoint (purge_step drops steps >= it; the checkpoint's
    # own update was logged at run.steps and is kept)
    writer = SummaryWriter(str(run_dir), purge_step=run.steps + 1 if resume else None)
    bar = tqdm(
        total=config.total_steps,
        initial=min(run.steps, config.total_steps),
        unit="step",
        unit_scale=True,
        disable=not progress,
        dynamic_ncols=True,
        desc=f"{config.teacher}/{config.env}",
    )
    start_steps, start_time = run.steps, time.perf_counter()
    last: dict[str, float] = {}
    saved_at = (run.update, run.steps)  # (update, steps) whose state checkpoint.pt holds (0: no file yet)
    snapshot: dict[str, Any] | None = None  # copy of the last completed update's state while not saved
    restore_sigterm = _sigterm_as_interrupt()
    try:
        while run.steps < config.total_steps:
            t0 = time.perf_counter()
            levels = run.teacher.propose(num_envs)
            results: dict[str, LevelResults] = {
                role: student.rollout(run.venvs[role], levels, num_steps)
                for role, student in run.students.items()
            }
            t_rollout = time.perf_counter() - t0
            learner = "teacher"
            try:
                teacher_metrics = run.teacher.update(levels, results) or {}
                student_metrics: dict[str, dict[str, float]] = {}
                if run.teacher.train_students:
                    for learner, student in run.students.items():
                        student_metrics[learner] = student.update()
            except PPOError as exc:
                raise UsageError(
                    f"training diverged at update {run.update + 1} ({learner}): {exc}; the last checkpoint "
                    f"in {run_dir} is intact (resume it with a lower ppo lr)"
                ) from exc
            elapsed = time.perf_counter() - t0
            run.update += 1
            run.steps += steps_per_update
            run.trained_updates += int(bool(run.teacher.train_students))
            # the update is complete: save it, or keep a copy to save on Ctrl-C (assigned only when whole)
            if run.update % config.checkpoint_interval == 0:
                save_checkpoint(ckpt_path, run.state_dict())
                saved_at, snapshot = (run.update, run.steps), None
            else:
                snapshot = copy.deepcopy(run.state_dict())
            main = results[next(iter(results))]
            last = {
                "mean_return": float(main.mean_return.mean()),
                "solved_rate": float(main.solved_rate.mean()),
                "steps_per_second": steps_per_update / elapsed,
            }
            if run.update % config.log_interval == 0:
                _log(writer, run, levels, results, student_metrics, teacher_metrics, elapsed, t_rollout)
            if config.image_interval and run.update % config.image_interval == 0:
                _log_images(writer, run, levels)
            bar.update(min(run.steps, config.total_steps) - bar.n)
            bar.set_postfix(
                ret=f"{last['mean_return']:.3f}",
                solved=f"{last['solved_rate']:.2f}",
                sps=f"{last['steps_per_second']:.0f}",
                refresh=False,
            )
        if saved_at[0] != run.update:
            save_checkpoint(ckpt_path, run.state_dict())
    except KeyboardInterrupt:
        wrote = snapshot is not None and snapshot["update"] != saved_at[0]
        if wrote:
            save_checkpoint(ckpt_path, snapshot)
            saved_at = (snapshot["update"], snapshot["steps"])
        raise TrainingInterrupted(run_dir, *saved_at, saved=wrote) from None
    finally:
        restore_sigterm()
        bar.close()
        writer.close()
        run.close()

    seconds = time.perf_counter() - start_time
    summary = {
        "run_dir": str(run_dir),
        "env": config.env,
        "teacher": config.teacher,
        "seed": config.seed,
        "updates": run.update,
        "steps": run.steps,
        "seconds": seconds,
        "steps_per_second": (run.steps - start_steps) / seconds if seconds > 0 else 0.0,
        "mean_return": last.get("mean_return", math.nan),
        "solved_rate": last.get("solved_rate", math.nan),
    }
    _write_json(
        run_dir / SUMMARY_NAME,
        {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in summary.items()},
    )
    return summary


def _log_images(writer: Any, run: _Run, levels: list[Any]) -> None:
    """Picture grids: the levels just proposed, and (PLR / ACCEL, teachers with `top_levels(k)`) the
    highest-scoring levels of the teacher's buffer."""
    images = [run.family.render(lvl) for lvl in levels[:8]]
    writer.add_image("levels/proposed", level_grid(images), run.steps, dataformats="HWC")
    top_levels = getattr(run.teacher, "top_levels", None)
    if callable(top_levels):
        top = top_levels(8)
        if top:
            images = [run.family.render(lvl) for lvl in top]
            writer.add_image("levels/top_buffer", level_grid(images), run.steps, dataformats="HWC")


def _log(
    writer: Any,
    run: _Run,
    levels: list[Any],
    results: dict[str, LevelResults],
    student_metrics: dict[str, dict[str, float]],
    teacher_metrics: dict[str, float],
    elapsed: float,
    t_rollout: float,
) -> None:
    step = run.steps
    steps_per_update = run.ppo_config.num_envs * run.ppo_config.num_steps
    for role, res in results.items():
        writer.add_scalar(f"{role}/mean_return", float(res.mean_return.mean()), step)
        writer.add_scalar(f"{role}/solved_rate", float(res.solved_rate.mean()), step)
        writer.add_scalar(f"{role}/max_return", float(res.max_return.mean()), step)
        writer.add_scalar(f"{role}/mean_value", float(res.mean_value.mean()), step)
        writer.add_scalar(f"{role}/positive_value_loss", float(res.positive_value_loss.mean()), step)
        for key, value in student_metrics.get(role, {}).items():
            writer.add_scalar(f"{role}/{key}", value, step)
    for key, value in teacher_metrics.items():
        try:
            writer.add_scalar(f"teacher/{key}", float(value), step)
        except (TypeError, ValueError):
            continue  # non-scalar teacher outputs are not logged
    stats: dict[str, list[float]] = {}
    for level in levels:
        for key, value in run.family.level_stats(level).items():
            stats.setdefault(key, []).append(float(value))
    for key, values in stats.items():
        writer.add_scalar(
            f"levels/{key}", float(np.nanmean(values)) if not np.isnan(values).all() else math.nan, step
        )
    # share of updates so far in which the students took a PPO step (below 1 for Robust PLR and ACCEL)
    writer.add_scalar("teacher/train_students_share", run.trained_updates / max(1, run.update), step)
    writer.add_scalar("perf/steps_per_second", steps_per_update / elapsed, step)
    writer.add_scalar("perf/rollout_seconds", t_rollout, step)
    writer.add_scalar("perf/update_seconds", elapsed, step)


__all__ = [
    "BACKENDS",
    "CONFIG_NAME",
    "TrainConfig",
    "TrainingInterrupted",
    "build_family",
    "build_teacher",
    "config_from_dict",
    "field_docs",
    "level_grid",
    "load_config",
    "make_vector_env",
    "ppo_config_for",
    "teacher_config_for",
    "train",
]
