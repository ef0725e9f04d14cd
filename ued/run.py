"""One training run as objects, and one update step of it: the only place that wires a teacher to its
students. No files, no logging, no signals here (those are `ued.runner.train`'s).

Per update (`update_step`): the teacher proposes `num_envs` levels, every student role collects
`num_steps` steps on those same levels, the teacher learns from the results, and the students take a PPO
step on their rollouts if the proposal says so. `total_steps` counts the protagonist's environment steps,
the literature's convention (a PAIRED run therefore simulates about twice as many steps).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium
import torch

import ued
from ued.config import RUN_FORMAT, PPOConfig, TrainConfig, merge
from ued.errors import UsageError
from ued.levels import LevelFamily, LevelResults, make_family
from ued.models import make_student
from ued.ppo import PPOError
from ued.student import Student
from ued.teachers import teacher_class
from ued.teachers.base import Proposal, Teacher, TeacherReport
from ued.threads import check_device
from ued.vecenv import LevelVectorEnv


# ----- settings, resolved -------------------------------------------------------------------------------
def build_family(config: TrainConfig) -> LevelFamily:
    """The run's level family; unknown or bad options are a UsageError naming the family's options."""
    return make_family(config.env, **config.env_options)


def ppo_config_for(family: LevelFamily, config: TrainConfig) -> PPOConfig:
    """The students' PPO config: the family's published defaults, then `config.ppo`, num_envs, num_steps."""
    ppo = merge(family.default_ppo(), config.ppo, "ppo")
    sizes = {
        k: v for k, v in (("num_envs", config.num_envs), ("num_steps", config.num_steps)) if v is not None
    }
    return merge(ppo, sizes, "ppo")


def teacher_config_for(family: LevelFamily, config: TrainConfig) -> Any:
    """The teacher's config: its class defaults, the family's published values for it
    (`family.teacher_defaults`), then `config.teacher_options` (None for a teacher without settings)."""
    cls = teacher_class(config.teacher)
    if cls.config_class is None:
        if config.teacher_options:
            raise UsageError(
                f"teacher {config.teacher!r} takes no options, got {', '.join(sorted(config.teacher_options))}; "
                "remove them (--teacher-option / the [teacher] table)"
            )
        return None
    published = merge(
        cls.config_class(), family.teacher_defaults.get(config.teacher), f"{family.name} defaults"
    )
    return merge(published, config.teacher_options, f"teacher {config.teacher!r}")


def resolved_settings(config: TrainConfig, family: LevelFamily | None = None) -> dict[str, Any]:
    """Every value the run uses, after the family's and teachers' defaults are applied (config.json's
    `resolved`; a resumed run must resolve to the same values)."""
    family = family or build_family(config)
    teacher = teacher_config_for(family, config)
    return {
        "env_options": family.options,
        "student": config.student or family.default_student,
        "student_options": dict(config.student_options),
        "ppo": ppo_config_for(family, config).to_dict(),
        "teacher": teacher.to_dict() if teacher is not None else None,
    }


def versions() -> dict[str, str]:
    """Versions of ued and of the libraries that define its numbers."""
    return {"ued": ued.__version__, "torch": torch.__version__, "gymnasium": gymnasium.__version__}


def validate(config: TrainConfig) -> None:
    """Raise UsageError on settings that cannot work (before anything is built or written)."""
    family = build_family(config)
    resolved_settings(config, family)
    make_student(family, config.student, config.student_options)
    check_device(config.device)


def config_record(
    config: TrainConfig, family: LevelFamily | None = None, evaluation: dict[str, Any] | None = None
) -> dict[str, Any]:
    """What config.json holds: the settings as given (`train`), every resolved value, the versions, the
    machine (device, torch CPU threads in use) and the periodic held-out evaluation (`evaluation`: its
    interval, source and episodes; None: off)."""
    return {
        "format": RUN_FORMAT,
        "train": config.to_dict(),
        "resolved": resolved_settings(config, family),
        "versions": versions(),
        "machine": {"device": config.device, "threads": torch.get_num_threads()},
        "periodic_evaluation": evaluation,
    }


def make_vector_env(
    family: LevelFamily, backend: str, num_envs: int, seed: int, device: str
) -> LevelVectorEnv:
    """The students' `LevelVectorEnv` on `backend` (`ued.config.BACKENDS`)."""
    if backend == "gym":
        return family.make_reference_vector_env(num_envs, seed=seed, device=device)
    return family.make_vector_env(num_envs, seed=seed, device=device)


# ----- the run ---------------------------------------------------------------------------------------------
class Run:
    """The objects of one training run (family, teacher, one student and one vector env per role), its
    counters, and their checkpoint form. `workdir`: where the teacher may keep files (the run directory)."""

    def __init__(self, config: TrainConfig, workdir: Path | None = None):
        self.config = config
        torch.manual_seed(config.seed)
        self.family = build_family(config)
        self.ppo_config = ppo_config_for(self.family, config)
        self.teacher: Teacher = teacher_class(config.teacher)(
            self.family,
            teacher_config_for(self.family, config),
            seed=config.seed,
            device=config.device,
            workdir=workdir,
        )
        self.students: dict[str, Student] = {}
        self.venvs: dict[str, LevelVectorEnv] = {}
        for i, role in enumerate(self.teacher.roles):
            policy = make_student(self.family, config.student, config.student_options)
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
        self.followup_steps = 0  # protagonist steps on teachers' follow-up proposals (outside the budget)

    @property
    def steps_per_update(self) -> int:
        return self.ppo_config.num_envs * self.ppo_config.num_steps

    def state_dict(self) -> dict[str, Any]:
        return {
            "config": self.config.to_dict(),
            "resolved": resolved_settings(self.config, self.family),
            "update": self.update,
            "steps": self.steps,
            "trained_updates": self.trained_updates,
            "followup_steps": self.followup_steps,
            "students": {role: s.state_dict() for role, s in self.students.items()},
            "teacher": self.teacher.state_dict(),
            "torch_rng": torch.get_rng_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a checkpoint; the students' learning rate is this run's `ppo.lr` (which may differ from
        the checkpoint's: lowering it is how a diverged run is resumed). A checkpoint that does not fit
        (missing entries, other shapes) is a UsageError."""
        try:
            self._load_state_dict(state)
        except (KeyError, RuntimeError, ValueError, TypeError, IndexError) as exc:
            first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
            raise UsageError(
                f"the checkpoint does not fit this run ({type(exc).__name__}: {first}); it was written by "
                "other settings or another version of ued: start a new run directory"
            ) from None

    def _load_state_dict(self, state: dict[str, Any]) -> None:
        missing = set(self.students) - set(state.get("students", {}))
        if missing:
            raise UsageError(
                f"the checkpoint has no student for role(s) {sorted(missing)}; was it another teacher?"
            )
        for role, student in self.students.items():
            student.load_state_dict(state["students"][role])
            for group in student.ppo.optimizer.param_groups:
                group["lr"] = self.ppo_config.lr
        self.teacher.load_state_dict(state["teacher"])
        torch.set_rng_state(state["torch_rng"])
        self.update = int(state["update"])
        self.steps = int(state["steps"])
        self.trained_updates = int(state.get("trained_updates", self.update))
        self.followup_steps = int(state.get("followup_steps", 0))

    def close(self) -> None:
        for venv in self.venvs.values():
            venv.close()


# ----- one update ----------------------------------------------------------------------------------------
class Diverged(RuntimeError):
    """A learner's PPO loss, gradient or weights stopped being finite during update `update` (1-based);
    its optimizer was not stepped. `learner` is a student role or "teacher"."""

    def __init__(self, learner: str, update: int, cause: PPOError):
        super().__init__(f"{learner}: {cause}")
        self.learner, self.update, self.cause = learner, update, cause


@dataclass(frozen=True)
class StepOutcome:
    """What one `update_step` did: the proposal, each role's results and PPO metrics (empty when the
    students did not learn), the teacher's report, and the wall time of the rollouts and of the whole step."""

    proposal: Proposal
    results: dict[str, LevelResults]
    student_metrics: dict[str, dict[str, float]]
    teacher_report: TeacherReport
    rollout_seconds: float
    seconds: float


def update_step(run: Run) -> StepOutcome:
    """One update of `run`: propose, collect, teacher update, student PPO steps; then the teacher's
    follow-up proposal, if it made one (played by every role, learned from only if it says so, not counted
    in `run.steps` but in `run.followup_steps`). Advances the counters. Raises `Diverged` when a learner's
    rollout or PPO step is not finite (the run's objects are then half-updated)."""
    start = time.perf_counter()
    config = run.ppo_config
    proposal = run.teacher.propose(config.num_envs)
    results, student_metrics, report, rollout_seconds = _play(run, proposal)
    scalars = dict(report.scalars)
    if report.followup is not None:
        _, _, followup, _ = _play(run, report.followup)
        if followup.followup is not None:
            raise RuntimeError("a follow-up proposal's report asked for another follow-up")
        scalars.update({f"followup/{k}": v for k, v in followup.scalars.items()})
        run.followup_steps += run.steps_per_update
    run.update += 1
    run.steps += run.steps_per_update
    run.trained_updates += int(proposal.train_students)
    report = TeacherReport(scalars, report.pictures, report.followup)
    return StepOutcome(
        proposal, results, student_metrics, report, rollout_seconds, time.perf_counter() - start
    )


def _play(
    run: Run, proposal: Proposal
) -> tuple[dict[str, LevelResults], dict[str, dict[str, float]], TeacherReport, float]:
    """Every role collects a rollout on `proposal.levels`, the teacher updates, the students learn if the
    proposal says so -> (results, PPO metrics per role, the teacher's report, rollout seconds)."""
    start = time.perf_counter()
    config = run.ppo_config
    rollouts = {}
    learner = "teacher"
    reset_seed = None  # the first role draws it; the others start as it did (dcd: one env for all)
    try:
        for learner, student in run.students.items():
            rollouts[learner] = student.collect(
                run.venvs[learner], proposal.levels, config.num_steps, reset_seed
            )
            reset_seed = rollouts[learner].reset_seed
        rollout_seconds = time.perf_counter() - start
        results = {role: rollout.results for role, rollout in rollouts.items()}
        learner = "teacher"
        report = run.teacher.update(proposal, results)
        student_metrics: dict[str, dict[str, float]] = {}
        if proposal.train_students:
            for learner, student in run.students.items():
                student_metrics[learner] = student.learn(rollouts[learner])
    except PPOError as exc:
        raise Diverged(learner, run.update + 1, exc) from exc
    return results, student_metrics, report, rollout_seconds


__all__ = [
    "Diverged",
    "Run",
    "StepOutcome",
    "build_family",
    "config_record",
    "make_vector_env",
    "ppo_config_for",
    "resolved_settings",
    "teacher_config_for",
    "update_step",
    "validate",
]
