"""Speed benchmarks behind `ued bench`: speed of the students' environment backends and of the training loop, side by side.

The one implementation of the speed benchmarks (`benchmarks/maze_speed.py` runs it as a script):
- env steps/s of each backend (the family's batched tensor backend vs the gymnasium/minigrid reference)
  with uniformly random actions, at the same numbers of envs, alternated in one run;
- training env steps/s of the DR loop (`ued.runner.train`), and of PAIRED when that teacher exists, with
  each backend, at the published settings (32 envs x 256 steps, 5 PPO epochs, LSTM 256), with a coarse
  profile: the share of wall time in rollout inference (policy forward), env stepping, PPO update,
  level conversion (`set_levels`) and everything else.

Numbers on a shared machine are noisy: compare ratios measured in the same run.
"""

from __future__ import annotations

import contextlib
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import Any

import gymnasium as gym
import torch

from ued import models, ppo, student, vecenv
from ued.config import BACKENDS, TrainConfig
from ued.errors import UsageError
from ued.levels import make_family
from ued.run import make_vector_env
from ued.runner import train
from ued.teachers import teacher_class
from ued.teachers.base import Teacher


# ----- backends -----------------------------------------------------------------------------------
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def env_speed(env: Any, steps: int, *, seed: int = 0, max_seconds: float = 10.0) -> dict[str, float]:
    """Env steps/s of `env` (a LevelVectorEnv) under uniformly random actions: `steps` batched steps
    (fewer if `max_seconds` runs out) after 3 warm-up steps. Returns {"steps", "seconds", "steps_per_s"}
    where steps counts single-env steps (batched steps x num_envs)."""
    n = env.num_envs
    gen = torch.Generator(device=env.device).manual_seed(seed)
    space = env.single_action_space
    if isinstance(space, gym.spaces.Discrete):
        actions = torch.randint(0, int(space.n), (steps + 3, n), generator=gen, device=env.device)
    else:  # a Box: uniform in its bounds
        low = torch.as_tensor(space.low, device=env.device)
        high = torch.as_tensor(space.high, device=env.device)
        u = torch.rand((steps + 3, n, *space.shape), generator=gen, device=env.device)
        actions = low + u * (high - low)
    env.reset(seed=seed)
    for t in range(3):
        env.step(actions[t])
    _sync(env.device)
    done = 0
    start = time.perf_counter()
    for t in range(3, steps + 3):
        env.step(actions[t])
        done += 1
        if done % 8 == 0 and time.perf_counter() - start > max_seconds:
            break
    _sync(env.device)
    seconds = time.perf_counter() - start
    return {"steps": done * n, "seconds": seconds, "steps_per_s": done * n / seconds}


def bench_envs(
    family: Any,
    backends: list[str],
    num_envs: list[int],
    steps: int,
    *,
    device: str = "cpu",
    repeats: int = 3,
    max_seconds: float = 5.0,
    echo: Callable[[str], None] = print,
) -> list[dict]:
    """Env steps/s of each backend at each number of envs; backends alternate within each repeat (so load
    from other processes hits them alike) and the median over repeats is kept. Where the family
    `shards_envs`, its default backend is measured in-process ("default") and sharded over one process per
    available core ("default-Np"). Returns one row per (num_envs, variant): {"num_envs", "backend",
    "workers" (None: not sharded), "steps_per_s", "all": [per repeat]}."""
    from ued.threads import available_cores

    rows = []
    for n in num_envs:
        variants: dict[str, tuple[str, int | None]] = {}
        for b in backends:
            if b == "default" and family.shards_envs:
                variants[b] = (b, 1)
                procs = min(available_cores(), n)
                if procs > 1:
                    variants[f"{b}-{procs}p"] = (b, procs)
            else:
                variants[b] = (b, None)
        envs = {}
        for label, (b, workers) in variants.items():
            if workers is None:
                envs[label] = make_vector_env(
                    family, b, n, seed=0, device=device if b == "default" else "cpu"
                )
            else:
                envs[label] = family.make_sharded_vector_env(n, workers, seed=0, device=device)
        runs: dict[str, list[float]] = {label: [] for label in variants}
        for r in range(repeats):
            for label in variants:
                runs[label].append(
                    env_speed(envs[label], steps, seed=r, max_seconds=max_seconds)["steps_per_s"]
                )
        for label, (b, workers) in variants.items():
            envs[label].close()
            rows.append(
                {
                    "num_envs": n,
                    "backend": label,
                    "workers": workers,
                    "steps_per_s": statistics.median(runs[label]),
                    "all": runs[label],
                }
            )
            echo(f"  env  {label:<11} {n:>6} envs  {rows[-1]['steps_per_s']:>12,.0f} steps/s")
    return rows


# ----- training -----------------------------------------------------------------------------------
class SectionTimer:
    """Wall time per named section, from wrapped methods. A section called inside another counts once (the
    outermost), except an inner section (`wrap(..., inner=True)`, e.g. an env's rendering), whose time is
    counted under its own name and taken out of the section around it."""

    def __init__(self, device: torch.device):
        self.device = device
        self.seconds: dict[str, float] = {}
        #: open sections, outermost first: [name, start time, seconds of inner sections]
        self.open: list[list[Any]] = []
        #: (time, cumulative student env steps, section seconds so far) at the start of every student rollout
        self.marks: list[tuple[float, int, dict[str, float]]] = []
        self.env_steps = 0

    def wrap(
        self, fn: Callable, name: str | None, on_call: Callable[..., None] | None = None, inner: bool = False
    ) -> Callable:
        """`fn` calling `on_call` first and adding its time to section `name` (None: not timed)."""
        timer = self

        def wrapped(*args: Any, **kwargs: Any) -> Any:
            if on_call is not None:
                on_call(*args, **kwargs)
            if name is None or (timer.open and (not inner or timer.open[-1][0] == name)):
                return fn(*args, **kwargs)
            _sync(timer.device)
            timer.open.append([name, time.perf_counter(), 0.0])
            try:
                return fn(*args, **kwargs)
            finally:
                _sync(timer.device)
                _, start, nested = timer.open.pop()
                elapsed = time.perf_counter() - start
                timer.seconds[name] = timer.seconds.get(name, 0.0) + elapsed - nested
                if timer.open:
                    timer.open[-1][2] += elapsed

        wrapped.__wrapped__ = fn  # type: ignore[attr-defined]
        return wrapped


@contextlib.contextmanager
def profiled(timer: SectionTimer) -> Iterator[None]:
    """Wrap (class-level, restored on exit) env stepping, policy forward, the PPO update, rollout storage,
    GAE, set_levels and the teachers' propose and update in timed sections, and the methods a vector env
    declares in its `profile_sections` as inner sections of its step; mark the start of every student
    rollout. Teacher classes must be imported before entering."""
    patches: list[tuple[type, str, Any]] = []

    def patch(
        cls: type,
        attr: str,
        name: str | None,
        on_call: Callable[..., None] | None = None,
        inner: bool = False,
    ) -> None:
        if attr in cls.__dict__:
            patches.append((cls, attr, cls.__dict__[attr]))
            setattr(cls, attr, timer.wrap(cls.__dict__[attr], name, on_call, inner))

    def subclasses(cls: type) -> list[type]:
        out = [cls]
        for sub in cls.__subclasses__():
            out += subclasses(sub)
        return out

    def count_steps(env: Any, *args: Any, **kwargs: Any) -> None:
        timer.env_steps += env.num_envs

    def mark(*args: Any, **kwargs: Any) -> None:
        timer.marks.append((time.perf_counter(), timer.env_steps, dict(timer.seconds)))

    patch(student.Student, "collect", None, mark)
    for cls in subclasses(vecenv.LevelVectorEnv):
        patch(cls, "step", "env step", count_steps)
        patch(cls, "set_levels", "set_levels")
        for attr, section in cls.__dict__.get("profile_sections", {}).items():
            patch(cls, attr, section, inner=True)
    for cls in subclasses(models.Policy):
        patch(cls, "forward", "rollout inference")
    patch(ppo.PPO, "update", "PPO update")
    # a teacher's own work (PAIRED's adversary writing levels and learning, PLR's scoring, ...) counts apart
    # from the students', its networks and PPO included
    for cls in subclasses(Teacher)[1:]:
        patch(cls, "propose", "teacher propose")
        patch(cls, "update", "teacher update")
    patch(ppo.RolloutStorage, "insert", "storage insert")
    patch(ppo.RolloutStorage, "compute_returns", "GAE")
    try:
        yield
    finally:
        for cls, attr, original in reversed(patches):
            setattr(cls, attr, original)


def bench_train(
    env_name: str,
    teacher: str,
    backend: str,
    *,
    updates: int = 3,
    num_envs: int = 32,
    num_steps: int = 256,
    device: str = "cpu",
    seed: int = 0,
    bf16: bool = False,
    threads: int | None = None,
) -> dict[str, Any]:
    """Run `ued.runner.train` for `updates` rollouts+updates of `teacher` on `backend` and time it
    (`bf16`: the students' PPO runs its LSTM in bfloat16, `PPOConfig.bf16`; `threads`: torch CPU threads,
    `TrainConfig.threads`, whose default is every available core on the CPU).

    steps_per_s counts student env steps (all students: PAIRED has two) between the first and the last
    rollout start, so start-up, the warm-up update and the final checkpoint are excluded; `profile` gives
    each section's share of that window's wall time ("teacher propose" / "teacher update": the teacher's
    own work, its networks and PPO included; "other": action sampling, logging, ...).
    """
    if updates < 3:
        raise UsageError("the training benchmark needs --updates >= 3 (the first one is warm-up)")
    if backend not in BACKENDS:
        raise UsageError(f"unknown backend {backend!r}; choose one of: {', '.join(BACKENDS)}")
    # build the backend once so its class is imported before `profiled` wraps the LevelVectorEnv classes
    make_vector_env(make_family(env_name), backend, 1, seed=0, device=device).close()
    roles = len(teacher_class(teacher).roles)  # imports the teacher, so that `profiled` wraps it
    timer = SectionTimer(torch.device(device))
    with tempfile.TemporaryDirectory(prefix="ued-bench-") as run_dir:
        config = TrainConfig(
            env=env_name,
            teacher=teacher,
            device=device,
            seed=seed,
            run_dir=run_dir,
            num_envs=num_envs,
            num_steps=num_steps,
            total_steps=updates * num_envs * num_steps,
            image_interval=0,
            checkpoint_interval=10**9,
            backend=backend,
            ppo={"bf16": True} if bf16 else {},
            threads=threads,
        )
        with profiled(timer):
            start = time.perf_counter()
            train(config, progress=False)
            total = time.perf_counter() - start
    # one rollout per student per cycle: compare the first student's rollout starts of cycle 1 and
    # of the last cycle, so the window holds whole cycles
    marks = timer.marks
    if len(marks) != roles * updates:
        raise RuntimeError(f"expected {roles * updates} student rollouts from {teacher}, saw {len(marks)}")
    (t0, s0, sec0), (t1, s1, sec1) = marks[roles], marks[roles * (updates - 1)]
    window = t1 - t0
    shares = {k: (v - sec0.get(k, 0.0)) / window for k, v in sec1.items()}
    shares["other"] = max(0.0, 1.0 - sum(shares.values()))
    return {
        "teacher": teacher,
        "backend": backend,
        "precision": "bf16" if bf16 else "fp32",
        "num_envs": num_envs,
        "num_steps": num_steps,
        "device": device,
        "threads": torch.get_num_threads(),
        "updates": updates,
        "steps_per_s": (s1 - s0) / window,
        "total_seconds": total,
        "profile": shares,
    }


# ----- command --------------------------------------------------------------------------------------
