"""Bad input is one clear line (a UsageError; exit code 2 at the CLI), never a traceback, a hang or a lost
file: a table of the cases a hostile pass found, and fuzzing of the loaders with random bytes and values."""

from __future__ import annotations

import json
import os
import pickle
import time

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from ued.checkpoint import load_checkpoint, save_checkpoint
from ued.cli.main import cli
from ued.cli.train import read_config_file
from ued.config import TrainConfig, config_from_dict
from ued.environments.maze_text import parse_maze
from ued.errors import UsageError

TINY = ["--num-envs", "2", "--num-steps", "8", "--threads", "1", "--no-progress"]


def one_line_error(result, *words: str) -> str:
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize(
    "args,words",
    [
        (["--env-option", "max_walls=abc"], ["max_walls"]),
        (["--env-option", "max_walls=2.7"], ["max_walls"]),
        (["--num-envs", "0"], ["num_envs"]),
        (["--teacher-option", "buffer_size=2.5", "--teacher", "plr"], ["buffer_size", "integer"]),
        (["--teacher-option", "ppo.lr=fast", "--teacher", "paired"], ["lr", "number"]),
        (["--teacher-option", "ppo.lr=nan", "--teacher", "paired"], ["lr", "finite"]),
        (["--lr", "-1"], ["lr"]),
        (["--lr", "1e38"], ["lr", "(0, 1]"]),
        (["--teacher-option", "ppo.epochs=0", "--teacher", "paired"], ["epochs"]),
        (["--teacher-option", "robust=maybe", "--teacher", "plr"], ["robust", "true or false"]),
        (["--teacher", "nope"], ["unknown teacher"]),
        (["--env", "nope"], ["unknown environment"]),
        (["--student", "nope"], ["unknown student network"]),
        (["--preset", "nope"], ["unknown preset"]),
        (["--eval-suite", "nope", "--eval-interval", "1"], ["unknown suite"]),
        (["--eval-suite", "carracing-transfer", "--eval-interval", "1"], ["carracing"]),
        (["--device", "cuda:7"], ["cuda"]),
    ],
)
def test_bad_training_settings_are_one_line(tmp_path, args, words):
    if args[:2] == ["--device", "cuda:7"] and torch.cuda.is_available():
        pytest.skip("a CUDA machine has cuda devices")
    run_dir = tmp_path / "run"
    result = CliRunner().invoke(
        cli, ["train", "--run-dir", str(run_dir), "--total-steps", "16", *TINY, *args]
    )
    one_line_error(result, *words)
    assert not (run_dir / "checkpoint.pt").exists()


def test_a_string_in_a_saved_config_is_one_line(tmp_path):
    run = tmp_path / "run"
    result = CliRunner().invoke(cli, ["train", "--run-dir", str(run), "--total-steps", "16", *TINY])
    assert result.exit_code == 0, result.output
    record = json.loads((run / "config.json").read_text())
    record["train"]["total_steps"] = "abc"
    (run / "config.json").write_text(json.dumps(record))
    one_line_error(CliRunner().invoke(cli, ["train", "--resume", str(run), "--no-progress"]), "total_steps")


def test_bad_checkpoints_are_one_line(tmp_path):
    run = tmp_path / "run"
    result = CliRunner().invoke(cli, ["train", "--run-dir", str(run), "--total-steps", "16", *TINY])
    assert result.exit_code == 0, result.output
    state = load_checkpoint(run / "checkpoint.pt")
    # a wrong tensor shape, a missing entry and a malformed version: one line each, on resume and eval
    state["students"]["protagonist"]["policy"]["core.weight_hh_l0"] = torch.zeros(3, 3)
    save_checkpoint(run / "checkpoint.pt", {k: v for k, v in state.items() if k not in ("format", "version")})
    args = ["train", "--resume", str(run), "--total-steps", "32", "--no-progress"]
    one_line_error(CliRunner().invoke(cli, args), "does not fit this run")
    one_line_error(CliRunner().invoke(cli, ["eval", str(run), "--episodes", "1"]), "do not fit")
    del state["teacher"]
    save_checkpoint(run / "checkpoint.pt", {k: v for k, v in state.items() if k not in ("format", "version")})
    one_line_error(CliRunner().invoke(cli, args), "does not fit this run")
    torch.save({"format": "ued-checkpoint", "version": "2"}, run / "checkpoint.pt")
    one_line_error(CliRunner().invoke(cli, args), "malformed checkpoint version")


def test_a_checkpoint_that_would_run_code_is_refused(tmp_path):
    class Boom:
        def __reduce__(self):
            return (os.system, ("echo pwned > " + str(tmp_path / "pwned"),))

    path = tmp_path / "checkpoint.pt"
    with open(path, "wb") as f:
        pickle.dump({"format": "ued-checkpoint", "version": 1, "x": Boom()}, f)
    with pytest.raises(UsageError, match="not a readable ued checkpoint"):
        load_checkpoint(path)
    assert not (tmp_path / "pwned").exists()


def test_a_huge_maze_file_is_refused_fast():
    start = time.perf_counter()
    text = "\n".join(["#" * 2000] + ["#" + "." * 1998 + "#"] * 1998 + ["#" * 2000])
    with pytest.raises(UsageError, match="larger than 255x255"):
        parse_maze(text)
    assert time.perf_counter() - start < 5


def test_a_huge_episode_limit_in_a_maze_header_is_one_line():
    grid = "#####\n#>..#\n#.#G#\n#...#\n#####"
    with pytest.raises(
        UsageError, match=r"max_steps is '99999999999'; give a whole number of steps in 1\.\.1000000"
    ):
        parse_maze("max_steps: 99999999999\n" + grid)
    assert parse_maze("max_steps: 1000000\n" + grid).max_steps == 1_000_000


def test_a_full_disk_while_checkpointing_is_one_line_and_keeps_the_old_file(tmp_path, monkeypatch):
    import errno

    import ued.io
    from ued.checkpoint import save_checkpoint

    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, {"steps": 1, "w": torch.zeros(3)})
    before = path.read_bytes()

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ued.io.os, "fsync", full)
    with pytest.raises(UsageError, match="No space left on device"):
        save_checkpoint(path, {"steps": 2, "w": torch.ones(1000)})
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt"]


def test_eval_refuses_an_unwritable_json_path_before_playing(tmp_path):
    run = tmp_path / "run"
    result = CliRunner().invoke(cli, ["train", "--run-dir", str(run), "--total-steps", "16", *TINY])
    assert result.exit_code == 0, result.output
    blocker = tmp_path / "file"
    blocker.write_text("x")
    one_line_error(
        CliRunner().invoke(cli, ["eval", str(run), "--json", str(blocker / "out.json")]), "cannot write"
    )


def _endless_inputs(tmp_path):
    """Paths a reader must refuse without reading: a FIFO (open blocks), /dev/zero (never ends), a folder."""
    fifo = tmp_path / "fifo.txt"
    os.mkfifo(fifo)
    return [fifo, "/dev/zero", tmp_path]


def test_input_files_that_never_end_are_one_line(tmp_path):
    from ued.environments.maze_text import load_maze
    from ued.environments.track_files import load_track_file
    from ued.levels import make_family

    readers = {
        "config file": read_config_file,
        "maze file": load_maze,
        "track file": load_track_file,
        "level path": make_family("maze").load_levels,
    }
    for path in _endless_inputs(tmp_path):
        for what, read in readers.items():
            if what != "level path" or path != tmp_path:
                with pytest.raises(UsageError, match="not a regular file|not a file or a folder"):
                    read(path)


def test_eval_never_writes_onto_or_reads_a_device(tmp_path):
    run = tmp_path / "run"
    result = CliRunner().invoke(cli, ["train", "--run-dir", str(run), "--total-steps", "16", *TINY])
    assert result.exit_code == 0, result.output
    start = time.perf_counter()
    one_line_error(CliRunner().invoke(cli, ["eval", str(run), "--json", "/dev/full"]), "not a regular file")
    assert time.perf_counter() - start < 30
    assert os.path.exists("/dev/full") and not os.path.isfile("/dev/full")


# ----- fuzzing: a few seconds of random inputs to each loader -----------------------------------------
def _random_value(rng: np.random.Generator, depth: int = 0):
    kind = int(rng.integers(9 if depth < 2 else 7))
    if kind == 0:
        return None
    if kind == 1:
        return bool(rng.integers(2))
    if kind == 2:
        return int(rng.integers(-(10**6), 10**6))
    if kind == 3:
        return float(rng.normal() * 10 ** int(rng.integers(-3, 12)))
    if kind == 4:
        return float(["nan", "inf", "-inf"][int(rng.integers(3))])
    if kind == 5:
        return "".join(chr(int(c)) for c in rng.integers(32, 127, size=int(rng.integers(0, 8))))
    if kind == 6:
        return ""
    if kind == 7:
        return [_random_value(rng, depth + 1) for _ in range(int(rng.integers(0, 3)))]
    return {"lr": _random_value(rng, depth + 1), "x": _random_value(rng, depth + 1)}


def _fuzz(seconds: float, fn) -> int:
    rng = np.random.default_rng(0)
    deadline, n = time.perf_counter() + seconds, 0
    while time.perf_counter() < deadline:
        try:
            fn(rng)
        except UsageError:
            pass
        n += 1
    return n


def test_fuzz_config_values():
    fields = list(TrainConfig.__dataclass_fields__)

    def one(rng):
        data = {str(rng.choice(fields)): _random_value(rng) for _ in range(int(rng.integers(1, 4)))}
        config_from_dict(data)

    assert _fuzz(1.5, one) > 100


def test_fuzz_config_files(tmp_path):
    def one(rng):
        suffix = [".toml", ".json"][int(rng.integers(2))]
        path = tmp_path / f"c{suffix}"
        if rng.random() < 0.5:
            path.write_bytes(bytes(rng.integers(0, 256, size=int(rng.integers(0, 64)), dtype=np.uint8)))
        else:
            path.write_text(json.dumps({"total_steps": _random_value(rng), "ppo": _random_value(rng)}))
        config_from_dict(read_config_file(path))

    assert _fuzz(1.5, one) > 50


def test_fuzz_maze_text():
    alphabet = list("#.G>v<^S?\n \t:x") + ["max_steps: ", "see_through: ", "; c\n"]

    def one(rng):
        if rng.random() < 0.3:
            text = bytes(rng.integers(0, 256, size=int(rng.integers(0, 80)), dtype=np.uint8)).decode(
                "latin-1"
            )
        else:
            text = "".join(str(rng.choice(alphabet)) for _ in range(int(rng.integers(0, 120))))
        parse_maze(text)

    assert _fuzz(1.5, one) > 100


def test_fuzz_checkpoint_files(tmp_path):
    good = tmp_path / "good.pt"
    save_checkpoint(good, {"x": torch.arange(4)})
    data = good.read_bytes()

    def one(rng):
        path = tmp_path / "c.pt"
        if rng.random() < 0.5:
            path.write_bytes(bytes(rng.integers(0, 256, size=int(rng.integers(0, 200)), dtype=np.uint8)))
        else:  # a damaged real checkpoint: bytes flipped or cut
            blob = bytearray(data)
            for i in rng.integers(0, len(blob), size=int(rng.integers(1, 8))):
                blob[int(i)] = int(rng.integers(256))
            path.write_bytes(bytes(blob[: int(rng.integers(1, len(blob) + 1))]))
        load_checkpoint(path)

    assert _fuzz(1.5, one) > 30
