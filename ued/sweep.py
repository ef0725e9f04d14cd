"""Teacher x seed sweeps: one training run per cell, on a local process pool or a Ray cluster.

A sweep lives in one folder::

    OUT/sweep.json            the manifest (settings and cells), written atomically
    OUT/<teacher>/seed<k>/    one run dir per cell (what `ued train` writes) plus
        sweep-done.json       the finished marker, written atomically when `train` returns
        sweep-error.txt       the traceback of the last failure of this cell, if any

Running the same sweep again resumes it: finished cells are skipped, cells that were killed resume from
their checkpoint (`train(..., resume=True)`), and cells never started start fresh. Nothing already written
is overwritten. A cell that fails is reported with its error line; the other cells go on.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import signal
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import CancelledError, ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from ued.checkpoint import CHECKPOINT_NAME, load_checkpoint
from ued.config import TrainConfig, config_from_dict
from ued.errors import UsageError
from ued.io import write_json
from ued.levels import family_names
from ued.run import build_family, teacher_config_for
from ued.run import validate as validate_train
from ued.rundir import RunDirLock
from ued.runner import train, training_left
from ued.teachers import TEACHERS

MANIFEST = "sweep.json"
DONE_MARKER = "sweep-done.json"
ERROR_FILE = "sweep-error.txt"
#: written in OUT when the sweep is interrupted: cells queued to a worker but not started yet read it and
#: do not start (removed when the sweep runs again)
STOP_FILE = ".ued-sweep-stop"
SWEEP_BACKENDS = ("local", "ray")
#: SweepConfig settings that must not change when a sweep is resumed (they change what a cell means)
_FROZEN_KEYS = ("env", "total_steps", "overrides")
#: training settings that may change between invocations of a sweep (they do not change the result)
_FREE_OVERRIDES = ("device", "log_interval", "checkpoint_interval", "image_interval")


@dataclass
class SweepConfig:
    """A grid of training runs: every teacher in `teachers` x every seed."""

    teachers: list[str]
    """teacher names (`ued.teachers.TEACHERS`)"""
    out: str
    """sweep folder; one run dir per cell at OUT/<teacher>/seed<k>"""
    env: str = "maze"
    """level family every cell trains on"""
    seeds: int | list[int] = 3
    """number of seeds (0..n-1) or an explicit list of seeds"""
    total_steps: int = 1_000_000
    """student environment steps per run"""
    backend: str = "local"
    """'local' (a process pool on this machine) or 'ray' (one remote task with 1 CPU per cell)"""
    address: str | None = None
    """Ray cluster address (`ray.init(address=...)`); None starts a local Ray"""
    max_workers: int | None = None
    """cells run at the same time (default: the number of CPU cores)"""
    overrides: dict[str, Any] = field(default_factory=dict)
    """further `ued.runner.TrainConfig` fields applied to every cell (e.g. num_envs, num_steps, ppo)"""

    def seed_list(self) -> list[int]:
        """The seeds as a list."""
        if isinstance(self.seeds, int):
            return list(range(self.seeds))
        return [int(s) for s in self.seeds]

    def workers(self) -> int:
        """How many cells run at the same time."""
        return int(self.max_workers) if self.max_workers else max(1, os.cpu_count() or 1)


@dataclass
class Cell:
    """One run of the grid."""

    teacher: str
    seed: int
    run_dir: str

    @property
    def name(self) -> str:
        """`teacher/seed<k>`, as printed in progress lines."""
        return f"{self.teacher}/seed{self.seed}"


@dataclass
class CellResult:
    """How one cell ended in this invocation."""

    cell: Cell
    status: str
    """'done' (trained now), 'skipped' (finished before), or 'failed'"""
    seconds: float = 0.0
    error: str = ""
    """one line: the exception's type and message"""
    resumed: bool = False
    """True when the cell continued from a checkpoint of a killed run"""


@dataclass
class SweepResult:
    """Every cell's outcome; `failed` lists those that raised."""

    results: list[CellResult]

    @property
    def failed(self) -> list[CellResult]:
        return [r for r in self.results if r.status == "failed"]

    @property
    def ok(self) -> bool:
        return not self.failed


# ----- files ------------------------------------------------------------------------------------------
def cell_dir(out: str | os.PathLike, teacher: str, seed: int) -> Path:
    """The run dir of one cell."""
    return Path(out) / teacher / f"seed{seed}"


def is_finished(run_dir: str | os.PathLike) -> bool:
    """Whether the cell's training returned (its finished marker exists)."""
    return (Path(run_dir) / DONE_MARKER).is_file()


def has_checkpoint(run_dir: str | os.PathLike) -> bool:
    """Whether a (killed or finished) training run left a checkpoint in `run_dir`."""
    return (Path(run_dir) / CHECKPOINT_NAME).is_file()


def load_manifest(out: str | os.PathLike) -> dict[str, Any] | None:
    """The sweep manifest of folder `out`, or None when it holds no sweep."""
    path = Path(out) / MANIFEST
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise UsageError(f"{path} is not valid JSON ({exc}); fix or remove it") from None


# ----- planning ---------------------------------------------------------------------------------------
def _train_config_kwargs(config: SweepConfig, cell: Cell) -> dict[str, Any]:
    kwargs = dict(config.overrides)
    kwargs.update(
        env=config.env,
        teacher=cell.teacher,
        total_steps=int(config.total_steps),
        seed=int(cell.seed),
        run_dir=cell.run_dir,
    )
    return kwargs


def build_train_config(kwargs: dict[str, Any]) -> Any:
    """A checked `ued.runner.TrainConfig` from keyword fields; unknown fields or impossible values raise a
    UsageError."""
    config = config_from_dict(kwargs, where="sweep training settings")
    validate_train(config)
    return config


def _check_options(config: SweepConfig) -> None:
    """Environment and teacher options must fit their configs (checked once, before any run starts)."""
    for name in config.teachers:
        train_config = config_from_dict({**config.overrides, "env": config.env, "teacher": name}, "sweep")
        try:
            teacher_config_for(build_family(train_config), train_config)
        except UsageError as exc:
            raise UsageError(
                f"{exc} (in the settings given to every cell; sweep that teacher alone)"
            ) from None


def validate(config: SweepConfig) -> list[Cell]:
    """Check everything that can be checked before any run starts; returns the grid's cells."""
    if not config.teachers:
        raise UsageError("no teachers given; pass e.g. --teachers dr,paired")
    unknown = [t for t in config.teachers if t not in TEACHERS]
    if unknown:
        raise UsageError(
            f"unknown teacher(s) {', '.join(map(repr, unknown))}; choose from: {', '.join(sorted(TEACHERS))}"
        )
    if len(set(config.teachers)) != len(config.teachers):
        raise UsageError("a teacher is listed twice in --teachers; list each once")
    envs = family_names()
    if config.env not in envs:
        raise UsageError(f"unknown environment {config.env!r}; choose one of: {', '.join(envs)}")
    if isinstance(config.seeds, int) and config.seeds < 1:
        raise UsageError(f"--seeds must be a positive count or a list of seeds, got {config.seeds}")
    seeds = config.seed_list()
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise UsageError(f"seeds must be distinct non-negative integers, got {seeds}")
    if int(config.total_steps) <= 0:
        raise UsageError(f"--total-steps must be positive, got {config.total_steps}")
    if config.backend not in SWEEP_BACKENDS:
        raise UsageError(f"unknown backend {config.backend!r}; choose one of: {', '.join(SWEEP_BACKENDS)}")
    if config.max_workers is not None and int(config.max_workers) < 1:
        raise UsageError(f"--workers must be at least 1, got {config.max_workers}")
    if config.address and config.backend != "ray":
        raise UsageError("--address only applies to --backend ray; add --backend ray or drop --address")
    if config.backend == "ray":
        try:
            import ray  # noqa: F401
        except ImportError:
            raise UsageError(
                "the ray backend needs Ray: pip install 'ued[ray]' (or use --backend local)"
            ) from None
    reserved = sorted(set(config.overrides) & {"env", "teacher", "seed", "total_steps", "run_dir"})
    if reserved:
        raise UsageError(
            f"{', '.join(reserved)} cannot be a per-run setting of a sweep; use --env, --teachers, --seeds, "
            "--total-steps and --out"
        )
    out = Path(config.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file; give a folder")
    cells = [
        Cell(teacher, seed, str(cell_dir(out, teacher, seed).resolve()))
        for teacher in config.teachers
        for seed in seeds
    ]
    for cell in cells:  # every cell's training config must build (catches bad overrides up front)
        build_train_config(_train_config_kwargs(config, cell))
    _check_options(config)
    manifest = load_manifest(out)
    if manifest is not None:
        for key in _FROZEN_KEYS:
            old, new = manifest.get("config", {}).get(key), _jsonable(getattr(config, key))
            if key == "overrides":
                old = {k: v for k, v in (old or {}).items() if k not in _FREE_OVERRIDES}
                new = {k: v for k, v in new.items() if k not in _FREE_OVERRIDES}
            if old != new:
                raise UsageError(
                    f"sweep {out} was started with {key}={old!r}, not {new!r}; "
                    "use the same settings to resume it or pick a new --out"
                )
    return cells


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value))


def _write_manifest(config: SweepConfig, cells: Sequence[Cell]) -> None:
    """Write OUT/sweep.json; a resumed sweep keeps the cells of earlier invocations (teachers/seeds added)."""
    out = Path(config.out)
    old = load_manifest(out) or {}
    known = {(c["teacher"], c["seed"]) for c in old.get("cells", [])}
    all_cells = list(old.get("cells", []))
    for cell in cells:
        if (cell.teacher, cell.seed) not in known:
            all_cells.append(
                {"teacher": cell.teacher, "seed": cell.seed, "run_dir": f"{cell.teacher}/seed{cell.seed}"}
            )
    settings = _jsonable(asdict(config))
    settings["out"] = str(out.resolve())
    write_json(
        out / MANIFEST,
        {
            "format": 1,
            "created": old.get("created", time.strftime("%Y-%m-%dT%H:%M:%S")),
            "updated": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "config": settings,
            "teachers": sorted(
                {c["teacher"] for c in all_cells}, key=[c["teacher"] for c in all_cells].index
            ),
            "cells": all_cells,
        },
    )


# ----- one cell (runs in a worker process) ------------------------------------------------------------
def _limit_threads() -> None:
    """One torch/BLAS thread per worker: cells are the parallelism."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    torch.set_num_threads(1)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set in this process
        pass


#: set in a pool worker once the sweep's parent process is gone; `run_cell` then starts nothing more
_PARENT_GONE = threading.Event()
#: set in a pool worker while `run_cell` trains
_IN_CELL = threading.Event()


def _start_worker() -> None:
    """A pool worker's start: one thread, and a watchdog for the sweep's parent process. When the parent
    is gone, an idle worker exits at once; a training one is interrupted (its training checkpoints the
    running update and stops) and exits when `run_cell` returns, never starting another cell."""
    _limit_threads()
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        _PARENT_GONE.set()
        if not _IN_CELL.is_set():
            os._exit(0)
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=watch, name="ued-parent-watchdog", daemon=True).start()


def _finished_checkpoint(run_dir: Path, config: TrainConfig) -> bool:
    """Whether the checkpoint in `run_dir` already holds the whole budget (a cell killed between the end
    of its training and its finished marker)."""
    if not has_checkpoint(run_dir):
        return False
    state = load_checkpoint(run_dir / CHECKPOINT_NAME)
    updates = state.get("trained_updates", state.get("update", 0))
    return not training_left(config, int(state.get("steps", 0)), int(updates))


def run_cell(train_kwargs: dict[str, Any], stop_file: str | None = None) -> dict[str, Any]:
    """Train one cell to completion (resuming a killed run) and write its finished marker; nothing is
    started when `stop_file` exists (the sweep was interrupted) or the sweep's parent process is gone.

    Never raises: returns {"status": "done"|"failed", "seconds", "error", "resumed"} so that one failing
    cell cannot take the pool down. The full traceback of a failure goes to RUN_DIR/sweep-error.txt.
    """
    if _PARENT_GONE.is_set():
        os._exit(0)
    if stop_file is not None and os.path.exists(stop_file):
        return {"status": "failed", "seconds": 0.0, "error": "cancelled (the sweep was interrupted)"}
    _IN_CELL.set()
    try:
        return _train_cell(train_kwargs)
    finally:
        _IN_CELL.clear()
        if _PARENT_GONE.is_set():  # the parent will read no result: stop here, after the checkpoint
            os._exit(0)


def _train_cell(train_kwargs: dict[str, Any]) -> dict[str, Any]:
    _limit_threads()
    run_dir = Path(train_kwargs["run_dir"])
    start = time.time()
    resumed = False
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        resumed = has_checkpoint(run_dir)
        config = build_train_config(train_kwargs)
        if not _finished_checkpoint(run_dir, config):  # else: only its marker is missing
            train(config, resume=resumed, progress=False)
        seconds = time.time() - start
        write_json(
            run_dir / DONE_MARKER,
            {"finished": time.strftime("%Y-%m-%dT%H:%M:%S"), "seconds": seconds, "resumed": resumed},
        )
        try:
            (run_dir / ERROR_FILE).unlink()
        except FileNotFoundError:
            pass
        return {"status": "done", "seconds": seconds, "error": "", "resumed": resumed}
    except BaseException as exc:  # noqa: BLE001  (KeyboardInterrupt in a worker is a failed cell too)
        text = traceback.format_exc()
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
            (run_dir / ERROR_FILE).write_text(text)
        except OSError:
            pass
        line = f"{type(exc).__name__}: {exc}".splitlines()[0] if str(exc) else type(exc).__name__
        return {"status": "failed", "seconds": time.time() - start, "error": line, "resumed": resumed}


# ----- backends ---------------------------------------------------------------------------------------
Callback = Callable[[CellResult, int, int], None]


def _run_local(
    jobs: list[tuple[Cell, dict[str, Any]]],
    workers: int,
    report: Callable[[CellResult], None],
    stop_file: Path,
) -> None:
    with ProcessPoolExecutor(
        max_workers=min(workers, len(jobs)), mp_context=mp.get_context("spawn"), initializer=_start_worker
    ) as pool:
        futures = {pool.submit(run_cell, kwargs, str(stop_file)): cell for cell, kwargs in jobs}
        try:
            _collect(futures, report)
        except KeyboardInterrupt:
            # Ctrl-C: cells not started yet never start (the queued ones a worker already holds read the
            # stop file); the running ones got the interrupt too (same terminal) and stop after
            # checkpointing their update, as `ued train` does
            stop_file.touch()
            for future in futures:
                future.cancel()
            pool.shutdown(wait=True, cancel_futures=True)
            raise


def _collect(futures: dict[Any, Cell], report: Callable[[CellResult], None]) -> None:
    """Report each cell as its future finishes."""
    for future in as_completed(futures):
        cell = futures[future]
        try:
            out = future.result()
        except BrokenProcessPool:
            out = {
                "status": "failed",
                "seconds": 0.0,
                "error": "worker process died (killed or out of memory)",
            }
        except CancelledError:
            out = {"status": "failed", "seconds": 0.0, "error": "cancelled"}
        except Exception as exc:  # noqa: BLE001
            out = {"status": "failed", "seconds": 0.0, "error": f"{type(exc).__name__}: {exc}"}
        report(_to_result(cell, out))


def _run_ray(
    jobs: list[tuple[Cell, dict[str, Any]]],
    workers: int,
    address: str | None,
    report: Callable[[CellResult], None],
) -> None:
    import ray

    started = False
    if not ray.is_initialized():
        if address:
            ray.init(address=address, include_dashboard=False, log_to_driver=False)
        else:
            ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
        started = True
    try:
        remote = ray.remote(num_cpus=1, max_retries=0)(run_cell)
        pending = {remote.remote(kwargs): cell for cell, kwargs in jobs}
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                cell = pending.pop(ref)
                try:
                    out = ray.get(ref)
                except Exception as exc:  # noqa: BLE001  (a worker that died)
                    line = str(exc).strip().splitlines()
                    out = {
                        "status": "failed",
                        "seconds": 0.0,
                        "error": f"{type(exc).__name__}: {line[0] if line else ''}",
                    }
                report(_to_result(cell, out))
    finally:
        if started:
            ray.shutdown()


def _to_result(cell: Cell, out: dict[str, Any]) -> CellResult:
    return CellResult(
        cell,
        out["status"],
        float(out.get("seconds", 0.0)),
        out.get("error", ""),
        bool(out.get("resumed", False)),
    )


def run_sweep(config: SweepConfig, on_cell_done: Callback | None = None) -> SweepResult:
    """Run (or resume) every cell of the sweep; `on_cell_done(result, n_finished, n_cells)` is called as
    each cell ends (skipped cells first). Raises UsageError for bad settings before any run starts; a cell
    that fails is reported in the result, never raised."""
    cells = validate(config)
    out = Path(config.out)
    with RunDirLock(out, what="sweeping"):
        stop_file = out / STOP_FILE
        stop_file.unlink(missing_ok=True)
        return _sweep(config, cells, stop_file, on_cell_done)


def _sweep(
    config: SweepConfig, cells: list[Cell], stop_file: Path, on_cell_done: Callback | None
) -> SweepResult:
    _write_manifest(config, cells)
    total = len(cells)
    results: list[CellResult] = []

    def report(result: CellResult) -> None:
        results.append(result)
        if on_cell_done is not None:
            on_cell_done(result, len(results), total)

    jobs = []
    for cell in cells:
        if is_finished(cell.run_dir):
            report(CellResult(cell, "skipped"))
        else:
            jobs.append((cell, _train_config_kwargs(config, cell)))
    if jobs:
        if config.backend == "ray":
            _run_ray(jobs, config.workers(), config.address, report)
        else:
            _run_local(jobs, config.workers(), report, stop_file)
    order = {(c.teacher, c.seed): i for i, c in enumerate(cells)}
    results.sort(key=lambda r: order[(r.cell.teacher, r.cell.seed)])
    return SweepResult(results)


def finished_runs(sweep_dir: str | os.PathLike) -> list[Cell]:
    """The finished cells of a sweep folder (from its manifest, or by scanning OUT/<teacher>/seed<k>)."""
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise UsageError(f"{sweep_dir} is not a folder; give the --out folder of `ued sweep`")
    manifest = load_manifest(sweep_dir)
    if manifest is not None:
        candidates = [(c["teacher"], int(c["seed"])) for c in manifest.get("cells", [])]
    else:
        candidates = []
        for path in sorted(sweep_dir.glob("*/seed*")):
            suffix = path.name[len("seed") :]
            if path.is_dir() and suffix.isdigit():
                candidates.append((path.parent.name, int(suffix)))
    cells = [Cell(t, s, str(cell_dir(sweep_dir, t, s))) for t, s in candidates]
    return [c for c in cells if is_finished(c.run_dir)]
