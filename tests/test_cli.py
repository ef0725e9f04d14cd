"""`ued train` and `ued eval` through click: a tiny run, resume, evaluation, and one-line errors (exit 2)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import torch
from click.testing import CliRunner

from ued.checkpoint import load_checkpoint
from ued.cli.main import cli
from ued.cli.train import parse_options, parse_value

torch.set_num_threads(1)

TINY = ["--num-envs", "4", "--num-steps", "32", "--threads", "1", "--no-progress"]
SMALL_MAZE = """\
; a small test maze
#######
#>..#.#
#.#...#
#.#.#G#
#######
"""


def run(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def assert_one_line_error(result, *words: str) -> None:
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    for word in words:
        assert word in lines[0], lines[0]


def test_train_resume_eval(tmp_path):
    run_dir = tmp_path / "run"
    result = run("train", "--total-steps", "256", "--run-dir", str(run_dir), *TINY)
    assert result.exit_code == 0, result.output
    assert "256 steps in 2 updates" in result.output
    result = run("train", "--resume", str(run_dir), "--total-steps", "384", "--no-progress")
    assert result.exit_code == 0, result.output
    assert "384 steps in 3 updates" in result.output
    assert json.loads((run_dir / "config.json").read_text())["train"]["total_steps"] == 384

    maze = tmp_path / "small.txt"
    maze.write_text(SMALL_MAZE)
    out = tmp_path / "eval.json"
    result = run("eval", str(run_dir), "--levels", str(maze), "--episodes", "3", "--json", str(out))
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert any(line.startswith("small ") for line in lines) and any(
        line.startswith("overall") for line in lines
    )
    data = json.loads(out.read_text())
    assert data["levels"][0]["level"] == "small" and data["levels"][0]["episodes"] == 3
    assert 0.0 <= data["overall"]["solved_rate"] <= 1.0
    # same seed, same numbers; the earlier result file may be replaced
    again = run("eval", str(run_dir), "--levels", str(maze), "--episodes", "3", "--json", str(out))
    assert again.exit_code == 0 and json.loads(out.read_text()) == data

    # errors: one line, exit code 2, nothing destroyed
    foreign = tmp_path / "notes.json"
    foreign.write_text('{"mine": 1}')
    assert_one_line_error(
        run("eval", str(run_dir), "--levels", str(maze), "--json", str(foreign)), "not a ued eval result"
    )
    assert foreign.read_text() == '{"mine": 1}'
    assert_one_line_error(run("train", "--total-steps", "128", "--run-dir", str(run_dir), *TINY), "--resume")
    assert_one_line_error(run("eval", str(run_dir), "--student", "antagonist"), "antagonist")
    bad = tmp_path / "bad.txt"
    bad.write_text("#####\n#>.x#\n#..G#\n#####\n#####\n")
    assert_one_line_error(run("eval", str(run_dir), "--levels", str(bad)), str(bad))
    (run_dir / "checkpoint.pt").write_bytes(b"garbage")
    assert_one_line_error(run("eval", str(run_dir), "--levels", str(maze)), "checkpoint")


def test_config_file_and_input_errors(tmp_path):
    config = tmp_path / "run.toml"
    config.write_text(
        'total_steps = 128\nseed = 3\n[env]\nname = "maze"\nmax_walls = 10\n[teacher]\nname = "dr"\n'
        "[ppo]\nlr = 3e-4\nepochs = 1\n"
    )
    run_dir = tmp_path / "r"
    result = run("train", "--config", str(config), "--run-dir", str(run_dir), *TINY)
    assert result.exit_code == 0, result.output
    saved = json.loads((run_dir / "config.json").read_text())["train"]
    assert saved["seed"] == 3 and saved["env_options"] == {"max_walls": 10} and saved["ppo"]["lr"] == 3e-4
    assert saved["num_envs"] == 4  # the command line wins over (and adds to) the file

    assert_one_line_error(run("train", "--teacher", "nope", "--run-dir", str(tmp_path / "a"), *TINY), "nope")
    assert_one_line_error(run("train", "--env", "nope", "--run-dir", str(tmp_path / "b"), *TINY), "nope")
    assert_one_line_error(run("eval", str(tmp_path / "missing")), "does not exist")
    assert_one_line_error(run("train", "--resume", str(tmp_path / "missing")), "config.json")
    bad = tmp_path / "bad.toml"
    bad.write_text("total_steps = = 3\n")
    assert_one_line_error(run("train", "--config", str(bad), "--run-dir", str(tmp_path / "c")), "malformed")
    unknown = tmp_path / "unknown.json"
    unknown.write_text('{"totl_steps": 5}')
    assert_one_line_error(
        run("train", "--config", str(unknown), "--run-dir", str(tmp_path / "d")), "totl_steps"
    )
    assert not (tmp_path / "c").exists() and not (tmp_path / "d").exists()


def test_help_texts():
    result = run("train", "--help")
    assert result.exit_code == 0 and "protagonist environment steps" in result.output
    result = run("eval", "--help")
    assert result.exit_code == 0 and "--suite" in result.output and "--levels" in result.output


def test_option_values_and_keys():
    assert parse_value("25") == 25 and parse_value("3e-4") == 3e-4 and parse_value("true") is True
    assert parse_value('"7"') == "7" and parse_value("null") is None and parse_value("[1, 2]") == [1, 2]
    assert parse_value("{lr = 1e-4}") == {"lr": 1e-4} and parse_value('{"lr": 0.5}') == {"lr": 0.5}
    assert parse_value("vae-maze.pt") == "vae-maze.pt" and parse_value("runs/a b") == "runs/a b"
    assert parse_value("1979-05-27") == "1979-05-27"  # a TOML date is not a config value: kept as text
    assert parse_options(["a=1", "ppo.lr=0.5", "ppo.epochs=2", "a=2", "max-walls=3"], "--x", "a=1") == {
        "a": 2,
        "ppo": {"lr": 0.5, "epochs": 2},
        "max_walls": 3,
    }


def test_env_and_teacher_options(tmp_path):
    config = tmp_path / "plr.toml"
    config.write_text(
        '[env]\nname = "maze"\nmax_walls = 10\n[teacher]\nname = "plr"\nreplay_prob = 0.5\nbuffer_size = 8\n'
    )
    run_dir = tmp_path / "r"
    result = run(
        "train", "--config", str(config), "--run-dir", str(run_dir), "--total-steps", "128",
        "--teacher-option", "replay_prob=0.9", "--teacher-option", "robust=false",
        "--env-option", "max_walls=12", *TINY,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    saved = json.loads((run_dir / "config.json").read_text())["train"]
    assert saved["env_options"] == {"max_walls": 12}  # the command line wins over the file
    assert saved["teacher_options"] == {"replay_prob": 0.9, "buffer_size": 8, "robust": False}

    # unknown keys are refused with the valid ones listed, before anything is written
    bad = tmp_path / "bad"
    result = run("train", "--teacher", "plr", "--teacher-option", "replay=0.9", "--run-dir", str(bad), *TINY)
    assert_one_line_error(result, "'replay'", "replay_prob", "buffer_size")
    # nested settings (CLUTR's own PPO) are checked too, before CLUTR would pretrain its VAE
    result = run(
        "train", "--teacher", "clutr", "--teacher-option", "ppo.lrate=1", "--run-dir", str(bad), *TINY
    )
    assert_one_line_error(result, "'lrate'", "epochs")
    result = run("train", "--env-option", "walls=3", "--run-dir", str(bad), *TINY)
    assert_one_line_error(result, "walls", "max_walls")
    result = run("train", "--env-option", "max_walls=-1", "--run-dir", str(bad), *TINY)
    assert_one_line_error(result, "max_walls")
    result = run("train", "--teacher", "dr", "--teacher-option", "x=1", "--run-dir", str(bad), *TINY)
    assert_one_line_error(result, "takes no options", "--teacher-option")
    assert_one_line_error(run("train", "--env-option", "max_walls", "--run-dir", str(bad)), "KEY=VALUE")
    assert not bad.exists()
    # options may not change on resume
    result = run("train", "--resume", str(run_dir), "--env-option", "max_walls=11", "--no-progress")
    assert_one_line_error(result, "env_options")


def test_ctrl_c_saves_and_tells_how_to_resume(tmp_path, monkeypatch):
    from ued.student import Student

    original, calls = Student.learn, []

    def learn(self, rollout):
        calls.append(1)
        if len(calls) == 3:
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C during update 3: it finishes and is saved
        return original(self, rollout)

    monkeypatch.setattr(Student, "learn", learn)
    run_dir = tmp_path / "run"
    result = run(
        "train", "--total-steps", "512", "--run-dir", str(run_dir), "--checkpoint-interval", "10", *TINY
    )
    assert result.exit_code == 130, result.output
    assert "stopping after this update" in result.output
    assert f"update 3 (384 steps) saved in {run_dir}" in result.output
    assert f"ued train --resume {run_dir}" in result.output
    result = run("train", "--resume", str(run_dir), "--no-progress")
    assert result.exit_code == 0, result.output
    assert "512 steps in 4 updates" in result.output and len(calls) == 4


def test_cli_modules_import_no_torch():
    """`ued --help` stays fast: command modules import torch only when a command runs."""
    code = (
        "import sys, ued.cli.main\n"
        "heavy = [m for m in ('torch', 'gymnasium') if m in sys.modules]\n"
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_vae_help_points_to_a_working_train_command():
    result = run("pretrain-vae", "--help")
    assert result.exit_code == 0 and "--teacher-option vae_path=" in result.output
    assert "--teacher-option" in run("train", "--help").output


def test_bf16_flag_sets_the_students_ppo_precision(tmp_path):
    config = tmp_path / "ppo.toml"
    config.write_text("[ppo]\nlr = 3e-4\n")
    run_dir = tmp_path / "r"
    result = run(
        "train", "--bf16", "--config", str(config), "--run-dir", str(run_dir), "--total-steps", "128", *TINY
    )
    assert result.exit_code == 0, result.output
    saved = json.loads((run_dir / "config.json").read_text())["train"]
    assert saved["ppo"] == {"lr": 3e-4, "bf16": True}  # merged with the file's [ppo] table


def test_render_run_draws_what_the_trained_teacher_proposes(tmp_path):
    run_dir = tmp_path / "paired"
    small = ["--teacher-option", "hidden_size=16", "--teacher-option", "conv_channels=4"]
    result = run(
        "train", "--teacher", "paired", "--run-dir", str(run_dir), "--total-steps", "128", *small, *TINY
    )
    assert result.exit_code == 0, result.output
    out = tmp_path / "pictures"
    result = run("render", "--run", str(run_dir), "--count", "3", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.glob("*.png")) == [
        "grid.png",
        "paired-00.png",
        "paired-01.png",
        "paired-02.png",
    ]
    assert_one_line_error(run("render", "--run", str(tmp_path / "none"), "--out", str(out)), "ued train")
    assert_one_line_error(
        run("render", "--run", str(run_dir), "--suite", "maze-transfer", "--out", str(out)), "one of"
    )


def test_sigterm_checkpoints_the_last_update(tmp_path):
    """`kill` (SIGTERM, as a cluster scheduler stops a job) takes the Ctrl-C path in a real process."""
    import signal
    import time

    run_dir = tmp_path / "run"
    args = ["train", "--total-steps", "100000000", "--run-dir", str(run_dir), "--checkpoint-interval", "1000"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "ued.cli.main", *args, *TINY], stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 120
        # wait until training has started, then let it complete some updates (each takes well under 1 s)
        while time.monotonic() < deadline and not any(run_dir.glob("events.out.tfevents.*")):
            time.sleep(0.2)
        assert (run_dir / "config.json").is_file(), "training did not start"
        time.sleep(5)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "ued train --resume" in err
    state = load_checkpoint(run_dir / "checkpoint.pt")
    assert state["update"] >= 1 and state["steps"] == state["update"] * 4 * 32
