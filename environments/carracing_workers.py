"""The fast CarRacing backend on several cores: `BatchedCarRacingEnv` shards stepped in worker processes.

Box2D and the per-env Python around it hold the GIL, so one process uses one core. `ShardedCarRacingEnv`
splits the sub-envs into contiguous shards, one `BatchedCarRacingEnv` each: the first in the parent
process, which would otherwise only wait, the others in spawned worker processes; a step sends every
worker its actions first, steps the parent's shard, and then collects, so the shards run at once.
Each shard is a `BatchedCarRacingEnv` of frame stack 1: workers put only the newest frame of each of their
sub-envs into one shared-memory tensor (one frame of each stack: less traffic between the cores), the
rest through pipes, and the parent stacks the frames as the in-process env does (a finished sub-env's stack
is its first frame repeated). Each sub-env's numbers depend only on its own level, seed and actions, so a
sharded env returns exactly what the in-process one returns (tests/test_fast_carracing.py checks it).

`fast_carracing_env` picks the number of workers (the processes stepping shards, the parent included):
one per available core, at least `MIN_ENVS_PER_WORKER` sub-envs each; a single worker means in-process
(no process, no copy).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
import torch.multiprocessing as mp

from ued.environments.carracing_env import ACTION_REPEAT, FRAME_STACK
from ued.environments.fast_carracing import BatchedCarRacingEnv, student_spaces
from ued.environments.tracks import Centerline, TrackLevel
from ued.threads import available_cores
from ued.vecenv import LevelVectorEnv

_RGB = 3  # channels of one frame

#: fewer sub-envs than this per worker and the pipe round trips cost more than the shard saves
MIN_ENVS_PER_WORKER = 4


def default_workers(num_envs: int) -> int:
    """Worker processes for `num_envs` sub-envs: one per core, each with >= `MIN_ENVS_PER_WORKER` envs."""
    return max(1, min(available_cores(), num_envs // MIN_ENVS_PER_WORKER))


def fast_carracing_env(
    levels: Sequence[TrackLevel | Centerline], *, workers: int | None = None, **kwargs: Any
) -> LevelVectorEnv:
    """The fast backend on `levels`: in-process for one worker, else `ShardedCarRacingEnv`; `workers` None:
    `default_workers`. `kwargs` go to `BatchedCarRacingEnv`."""
    n = default_workers(len(levels)) if workers is None else min(int(workers), len(levels))
    if n <= 1:
        return BatchedCarRacingEnv(levels, **kwargs)
    return ShardedCarRacingEnv(levels, workers=n, **kwargs)


def _serve(conn: Any, levels: list, kwargs: dict[str, Any], frames: torch.Tensor, lo: int, hi: int) -> None:
    """A worker: one in-process `BatchedCarRacingEnv` on sub-envs [lo, hi), driven by (command, arg)
    messages, each answered ("ok", value) or ("error", (type name, message)); the newest frame of each
    observation goes to `frames[lo:hi]`. Exits on "close" or when the parent's end of the pipe closes (the
    parent died)."""
    torch.set_num_threads(1)

    def handle(env: BatchedCarRacingEnv | None, cmd: str, arg: Any) -> tuple[BatchedCarRacingEnv | None, Any]:
        if cmd == "start":
            return BatchedCarRacingEnv(levels, **kwargs), None
        if cmd == "step":
            o, r, te, tr = env.step(torch.from_numpy(arg))
            frames[lo:hi] = o
            return env, (r.numpy(), te.numpy(), tr.numpy(), env.last_green.copy())
        if cmd == "reset":
            frames[lo:hi] = env.reset(seed=arg)
        elif cmd == "set_levels":
            env.set_levels(arg)
        return env, None

    env = None
    cmd, arg = "start", None
    try:
        while cmd != "close":
            try:
                env, value = handle(env, cmd, arg)
                conn.send(("ok", value))
            except Exception as exc:  # noqa: BLE001 - any failure goes back to the parent, which raises it
                conn.send(("error", (type(exc).__name__, str(exc))))
                if env is None:
                    break
            cmd, arg = conn.recv()
    except (EOFError, OSError, KeyboardInterrupt):
        pass
    finally:
        if env is not None:
            env.close()


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """torch on one thread while the parent steps its shard: the workers step on the other cores."""
    saved = torch.get_num_threads()
    if saved != 1:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if saved != 1:
            torch.set_num_threads(saved)


class ShardedCarRacingEnv(LevelVectorEnv):
    """`BatchedCarRacingEnv` over `workers` processes, the parent and `workers - 1` spawned ones (module
    docstring); the same observations, rewards, terminations and `last_green` as one in-process
    `BatchedCarRacingEnv` on the same levels."""

    def __init__(
        self, levels: Sequence[TrackLevel | Centerline], *, workers: int, device: str = "cpu", **kwargs
    ):
        n = len(levels)
        if not 2 <= workers <= n:
            raise ValueError(f"workers must be in [2, {n}] for {n} envs, got {workers}")
        self.num_envs = n
        self.device = torch.device(device)
        self._bounds = [(int(s[0]), int(s[-1]) + 1) for s in np.array_split(np.arange(n), workers)]
        self._stack = kwargs.pop("frame_stack", FRAME_STACK)
        kwargs["frame_stack"] = 1  # each shard returns its newest frames; the parent stacks them
        self.single_observation_space, self.single_action_space = student_spaces(self._stack)
        shape = self.single_observation_space.shape
        self._obs = np.zeros((n, *shape), dtype=np.uint8)  # the last observation (the parent's own)
        self._frames = torch.zeros((n, _RGB, *shape[1:]), dtype=torch.uint8).share_memory_()
        self.last_green = np.full((n, kwargs.get("action_repeat", ACTION_REPEAT)), np.nan)
        self.levels = list(levels)
        ctx = mp.get_context("spawn")
        self._conns, self._procs = [], []
        self._closed = False
        self._local: BatchedCarRacingEnv | None = None
        try:
            for lo, hi in self._bounds[1:]:
                parent, child = ctx.Pipe()
                proc = ctx.Process(
                    target=_serve,
                    args=(child, list(levels[lo:hi]), kwargs, self._frames, lo, hi),
                    daemon=True,
                )
                proc.start()
                child.close()
                self._conns.append(parent)
                self._procs.append(proc)
            lo, hi = self._bounds[0]
            self._local = self._in_parent(lambda: BatchedCarRacingEnv(list(levels[lo:hi]), **kwargs))
            self._collect()
        except BaseException:
            self.close()
            raise

    def _in_parent(self, work: Any) -> Any:
        """`work()` on the parent's shard, on one torch thread, while the workers run; if it raises, the
        workers' replies are collected first (so that none is left in a pipe) and its error is raised."""
        try:
            with _one_thread():
                return work()
        except BaseException:
            with contextlib.suppress(Exception):
                self._collect()
            raise

    def _collect(self) -> list[Any]:
        """Every worker's reply, in shard order; a worker's error is raised here (the same type where it is
        a ValueError or TypeError, so callers see what the in-process env raises)."""
        out, error = [], None
        for conn in self._conns:
            try:
                status, value = conn.recv()
            except (EOFError, OSError):
                status, value = "error", ("RuntimeError", "a CarRacing worker process died")
            if status == "error" and error is None:
                error = value
            out.append(value)
        if error is not None:
            name, message = error
            kind = {"ValueError": ValueError, "TypeError": TypeError}.get(name, RuntimeError)
            raise kind(message)
        return out

    def _observation(self, restart: np.ndarray) -> torch.Tensor:
        """The next observation, on `device`: the last one's frames less its oldest, then the new frames;
        sub-envs where `restart` [N] bool holds get their new frame repeated (a reset). A new array, built by
        numpy (one thread, so that torch's OpenMP threads do not wake and spin on the cores the workers step
        on). On the CPU the caller gets the env's own copy, as from the in-process env: the next observation
        is built from it, so it is read, not written."""
        frames = self._frames.numpy()
        obs = np.empty_like(self._obs)
        obs[:, :-_RGB] = self._obs[:, _RGB:]
        obs[:, -_RGB:] = frames
        if restart.any():
            obs[restart] = np.tile(frames[restart], (1, self._stack, 1, 1))
        self._obs = obs
        return torch.from_numpy(obs).to(self.device)

    def set_levels(self, levels: Sequence[Any]) -> None:
        if len(levels) != self.num_envs:
            raise ValueError(f"expected {self.num_envs} levels, got {len(levels)}")
        for conn, (lo, hi) in zip(self._conns, self._bounds[1:]):
            conn.send(("set_levels", list(levels[lo:hi])))
        lo, hi = self._bounds[0]
        self._in_parent(lambda: self._local.set_levels(list(levels[lo:hi])))
        self._collect()
        self.levels = list(levels)

    def reset(self, seed: int | None = None) -> torch.Tensor:
        for conn, (lo, _) in zip(self._conns, self._bounds[1:]):
            conn.send(("reset", None if seed is None else seed + lo))
        lo, hi = self._bounds[0]
        self._frames.numpy()[lo:hi] = self._in_parent(lambda: self._local.reset(seed=seed)).numpy()
        self._collect()
        return self._observation(np.ones(self.num_envs, dtype=bool))

    def step(self, actions: torch.Tensor):
        a = actions.detach().cpu().numpy().reshape(self.num_envs, -1)
        for conn, (lo, hi) in zip(self._conns, self._bounds[1:]):
            conn.send(("step", np.ascontiguousarray(a[lo:hi])))
        lo, hi = self._bounds[0]
        o, r, te, tr = self._in_parent(
            lambda: self._local.step(torch.from_numpy(np.ascontiguousarray(a[lo:hi])))
        )
        self._frames.numpy()[lo:hi] = o.numpy()  # numpy: torch's copy would wake its OpenMP threads
        parts = [(r.numpy(), te.numpy(), tr.numpy(), self._local.last_green.copy()), *self._collect()]
        reward, term, trunc, green = (np.concatenate(p) for p in zip(*parts))
        self.last_green = green
        d = self.device
        return (
            self._observation(term | trunc),
            torch.as_tensor(reward, dtype=torch.float32, device=d),
            torch.as_tensor(term, device=d),
            torch.as_tensor(trunc, device=d),
        )

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for conn in self._conns:
            try:
                conn.send(("close", None))
            except (BrokenPipeError, OSError):
                pass
        for proc in self._procs:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.kill()
                proc.join()
        for conn in self._conns:
            conn.close()
        if self._local is not None:
            self._local.close()


__all__ = ["MIN_ENVS_PER_WORKER", "ShardedCarRacingEnv", "default_workers", "fast_carracing_env"]
