"""`train`: the harness around `ued.run.update_step` - the run directory, resume, checkpoints, logs,
progress bar and stop signals.

A run directory holds `config.json` (the settings as given, every resolved value and the library versions;
written at the start), TensorBoard event files, `checkpoint.pt` (atomic, every `checkpoint_interval`
updates and at the end) and `summary.json` (at the end). One process writes it at a time (`RunDirLock`).

Stopping: the first Ctrl-C or SIGTERM (`kill`, a cluster scheduler) lets the running update finish, saves
it and stops; a second one stops at once, keeping the last checkpoint. A checkpoint being written is always
finished first.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from typing_extensions import Self

import math
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from ued.allocator import keep_freed_memory
from ued.checkpoint import CHECKPOINT_NAME, load_checkpoint, save_checkpoint
from ued.config import CONFIG_NAME, TrainConfig, config_from_dict
from ued.errors import UsageError
from ued.evaluation import PeriodicEvaluation
from ued.io import write_json
from ued.run import (
    Diverged,
    Run,
    config_record,
    resolved_settings,
    update_step,
    validate,
)
from ued.rundir import RunDirLock
from ued.tblog import log_episode, log_images, log_step
from ued.threads import apply_threads

SUMMARY_NAME = "summary.json"

#: settings that may change when a run is resumed (everything else that defines it may not)
CHANGEABLE_ON_RESUME = (
    "total_steps",
    "student_updates",
    "run_dir",
    "log_interval",
    "checkpoint_interval",
    "image_interval",
    "eval_interval",
    "eval_suite",
    "eval_levels",
    "eval_episodes",
    "video_interval",
    "keep_freed_memory",
)
#: resolved values that may change on resume: the students' learning rate (to resume a diverged run lower)
#: and what acts only when a run starts (the adversary's initial weights)
CHANGEABLE_RESOLVED = ("ppo.lr", "teacher.actor_gains")


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM during `train`. `update`/`steps`: what checkpoint.pt holds now; `saved`: whether
    this stop wrote it (False when it was already saved, or when a second interrupt stopped at once)."""

    def __init__(self, run_dir: Path, update: int, steps: int, saved: bool):
        super().__init__(f"training interrupted; checkpoint of update {update} ({steps} steps)")
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


class StopRequests:
    """SIGINT / SIGTERM handling while training (main thread only; elsewhere a KeyboardInterrupt simply
    stops at once). The first signal sets `requested`, so the loop stops after the running update; a
    second one raises KeyboardInterrupt, unless a checkpoint is being written (`shielded`)."""

    def __init__(self) -> None:
        self.requested = False
        self._shielded = False
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if self._shielded:
            print("ued: writing the checkpoint, stopping right after", file=sys.stderr, flush=True)
            self.requested = True
            return
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print(
            "\nued: stopping after this update (it will be checkpointed); interrupt again to stop now, "
            "keeping the last checkpoint",
            file=sys.stderr,
            flush=True,
        )

    def __enter__(self) -> Self:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    @contextmanager
    def shielded(self) -> Iterator[None]:
        """Signals during the block only request a stop (a checkpoint write is never cut short)."""
        self._shielded = True
        try:
            yield
        finally:
            self._shielded = False


#: option tables whose effect is checked on the resolved values (so that an explicit default is no change)
_RESOLVED_TABLES = ("env_options", "teacher_options", "student_options", "ppo")


def _check_resume(config: TrainConfig, state: dict[str, Any], where: Path) -> None:
    """Refuse to resume with settings, or resolved values, other than the checkpoint's."""
    saved = config_from_dict(state.get("config", {}), where=f"{where} config")
    skip = CHANGEABLE_ON_RESUME + (_RESOLVED_TABLES if "resolved" in state else ())
    fixed = [k for k in saved.to_dict() if k not in skip]
    changed = [k for k in fixed if getattr(saved, k) != getattr(config, k)]
    if changed:
        raise UsageError(
            f"cannot resume {where.parent} with different {', '.join(changed)}; resume with the saved "
            "settings or start a new run in another run directory"
        )
    if "resolved" in state:
        now, before = _flat(resolved_settings(config)), _flat(state["resolved"])
        drift = sorted(k for k in set(now) | set(before) if now.get(k) != before.get(k))
        drift = [k for k in drift if k not in CHANGEABLE_RESOLVED]
        # a setting ued added after the run started: the user states the value the run had
        given = {"env_options": config.env_options, "student_options": config.student_options}
        explicit = _flat({**given, "ppo": config.ppo, "teacher": config.teacher_options})
        added = [k for k in drift if k not in before]
        if any(k not in explicit for k in added):
            raise UsageError(
                f"cannot resume {where.parent}: ued has settings it did not record ({', '.join(added[:6])}); "
                "set them explicitly to what the run used (e.g. --env-option camera=gymnasium for a CarRacing "
                "run started before 2026-12-07), or start a new run"
            )
        drift = [k for k in drift if k not in added]
        if drift:
            raise UsageError(
                f"cannot resume {where.parent}: its settings now resolve differently ({', '.join(drift[:6])}), "
                "e.g. after a change of ued or of a plugin's defaults; set them explicitly to the saved "
                "values (config.json's `resolved`) or start a new run"
            )


def training_left(config: TrainConfig, steps: int, trained_updates: int) -> bool:
    """Whether a run at `steps` protagonist steps and `trained_updates` student PPO updates has budget left
    under `config.total_steps` and `config.student_updates` (the loop, resume, and `ued sweep`'s check of a
    cell killed before its finished marker)."""
    limit = config.student_updates
    return steps < config.total_steps and (limit is None or trained_updates < limit)


def _flat(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, dict):
        out: dict[str, Any] = {}
        for k, v in data.items():
            out.update(_flat(v, f"{prefix}{k}."))
        return out or {prefix.rstrip("."): {}}
    return {prefix.rstrip("."): data}


def train(config: TrainConfig, resume: bool = False, progress: bool = True) -> dict[str, Any]:
    """Train students against `config.teacher` on `config.env` until `config.total_steps` protagonist steps
    (or, when set, `config.student_updates` student PPO updates, whichever comes first).

    A fresh run refuses a run directory that already holds a checkpoint; `resume=True` continues the
    checkpoint in `config.run_dir` (refused if there is none). Returns a summary (steps, updates, speed,
    the protagonist's last mean return and solved rate). Ctrl-C / SIGTERM: see the module docstring; the
    stop raises `TrainingInterrupted` (a KeyboardInterrupt).
    """
    validate(config)
    run_dir = config.resolved_run_dir()
    config.run_dir = str(run_dir)
    ckpt_path = run_dir / CHECKPOINT_NAME
    if resume and not ckpt_path.is_file():
        raise UsageError(f"cannot resume: {run_dir} holds no {CHECKPOINT_NAME}; start a fresh run instead")
    if not resume and ckpt_path.exists():
        raise UsageError(
            f"{run_dir} already holds a training checkpoint; continue it with `ued train --resume {run_dir}` "
            "or choose another --run-dir"
        )
    with RunDirLock(run_dir):
        state = None
        if resume:
            state = load_checkpoint(ckpt_path)
            _check_resume(config, state, ckpt_path)
        apply_threads(config.threads, config.device)
        if config.keep_freed_memory:
            keep_freed_memory()
        run = Run(config, workdir=run_dir)
        try:
            if state is not None:
                run.load_state_dict(state)
            if resume and run.steps >= config.total_steps:
                raise UsageError(
                    f"{run_dir} has already trained {run.steps} steps (total_steps {config.total_steps}); "
                    "resume with a larger --total-steps"
                )
            if resume and not training_left(config, run.steps, run.trained_updates):
                raise UsageError(
                    f"{run_dir} has already taken {run.trained_updates} student updates (student_updates "
                    f"{config.student_updates}); resume with a larger --student-updates"
                )
            held_out = PeriodicEvaluation.plan(config, run.family, run.steps_per_update)
            plan = None if held_out is None else held_out.record()
            write_json(run_dir / CONFIG_NAME, config_record(config, run.family, plan))
            return _train_loop(run, run_dir, resume, progress, held_out)
        finally:
            run.close()


def _train_loop(
    run: Run, run_dir: Path, resume: bool, progress: bool, held_out: PeriodicEvaluation | None
) -> dict[str, Any]:
    config = run.config
    ckpt_path = run_dir / CHECKPOINT_NAME
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
    saved_at = (run.update, run.steps)  # what checkpoint.pt holds (update 0: no file yet)
    stop = StopRequests()

    def checkpoint() -> None:
        nonlocal saved_at
        with stop.shielded():
            writer.flush()  # the logs up to the checkpoint are on disk before it is: a kill leaves no gap
            save_checkpoint(ckpt_path, run.state_dict())
        saved_at = (run.update, run.steps)

    try:
        with stop:
            while training_left(config, run.steps, run.trained_updates) and not stop.requested:
                try:
                    outcome = update_step(run)
                except Diverged as exc:
                    kept = (
                        f"the checkpoint of update {saved_at[0]} in {run_dir} is intact; resume it with a "
                        f"lower learning rate (`ued train --resume {run_dir} --lr LR`)"
                        if saved_at[0]
                        else "no checkpoint was written yet; start again with a lower learning rate"
                    )
                    raise UsageError(f"training diverged at update {exc.update} ({exc}); {kept}") from None
                main = next(iter(outcome.results.values()))
                last = {
                    "mean_return": float(main.mean_return.mean()),
                    "solved_rate": float(main.solved_rate.mean()),
                    "steps_per_second": run.steps_per_update / outcome.seconds,
                }
                if run.update % config.log_interval == 0:
                    log_step(writer, run, outcome)
                if config.image_interval and run.update % config.image_interval == 0:
                    log_images(writer, run.family, run.steps, outcome)
                if held_out is not None and held_out.due(run.update):
                    policies = {role: s.policy for role, s in run.students.items()}
                    scalars = held_out.scalars(policies, run.family, config.device)
                    for tag, value in scalars.items():  # written only once the whole evaluation is done
                        writer.add_scalar(tag, value, run.steps)
                if config.video_interval and run.update % config.video_interval == 0:
                    log_episode(writer, run, run_dir, held_out)
                # after the logs and the evaluation of this update, so that a resumed run repeats an update
                # only if its logs were incomplete (the events beyond the checkpoint are purged)
                if run.update % config.checkpoint_interval == 0:
                    checkpoint()
                bar.update(min(run.steps, config.total_steps) - bar.n)
                bar.set_postfix(
                    ret=f"{last['mean_return']:.3f}",
                    solved=f"{last['solved_rate']:.2f}",
                    sps=f"{last['steps_per_second']:.0f}",
                    refresh=False,
                )
            if saved_at[0] != run.update:
                checkpoint()
                if stop.requested:
                    raise TrainingInterrupted(run_dir, *saved_at, saved=True)
            elif stop.requested:
                raise TrainingInterrupted(run_dir, *saved_at, saved=False)
    except KeyboardInterrupt as exc:
        if isinstance(exc, TrainingInterrupted):
            raise
        raise TrainingInterrupted(run_dir, *saved_at, saved=False) from None
    finally:
        bar.close()
        writer.close()

    seconds = time.perf_counter() - start_time
    summary = {
        "run_dir": str(run_dir),
        "env": config.env,
        "teacher": config.teacher,
        "seed": config.seed,
        "updates": run.update,
        "trained_updates": run.trained_updates,
        "steps": run.steps,
        "seconds": seconds,
        "steps_per_second": (run.steps - start_steps) / seconds if seconds > 0 else 0.0,
        "mean_return": last.get("mean_return", math.nan),
        "solved_rate": last.get("solved_rate", math.nan),
    }
    write_json(run_dir / SUMMARY_NAME, summary)
    return summary


__all__ = ["SUMMARY_NAME", "TrainingInterrupted", "train", "training_left"]
