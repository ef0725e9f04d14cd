"""ued's maze DR training loop next to jaxued's (examples/maze_dr.py, run unmodified) on this machine.

Both at the published student settings: 32 envs x 256 steps, 5 PPO epochs, 1 minibatch, LSTM 256.
Each round runs jaxued then ued, each in a fresh process. jaxued is timed by the wall clock between
its logged chunks of `--eval-freq` updates (one jitted scan plus its evaluation: 8 levels, 1 attempt,
with their animation frames); its first chunk (JIT compile) is dropped. ued is timed by
`ued.bench.bench_train` (its first update is warm-up). Medians over rounds, and their ratio. Set up
the peers' environment first with benchmarks/peers/setup.sh.

    python benchmarks/peers/peers.py --rounds 3 --json peers.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
STEPS_PER_UPDATE = 32 * 256


def jaxued_round(python: str, script: Path, eval_freq: int, chunks: int, seed: int) -> float:
    """Env steps/s of jaxued's maze DR over `chunks - 1` chunks of `eval_freq` updates (compile dropped)."""
    with tempfile.TemporaryDirectory(prefix="peers-") as tmp:
        log = Path(tmp) / "log.jsonl"
        env = {**os.environ, "PEER_LOG": str(log), "PYTHONPATH": str(HERE / "stub"), "WANDB_MODE": "disabled"}
        args = [
            python,
            str(script),
            "--seed",
            str(seed),
            "--num_updates",
            str(eval_freq * chunks),
            "--eval_freq",
            str(eval_freq),
            "--eval_num_attempts",
            "1",
            "--checkpoint_save_interval",
            "0",
        ]
        subprocess.run(args, env=env, cwd=tmp, check=True, stdout=subprocess.DEVNULL)
        rows = [json.loads(line) for line in log.read_text().splitlines()]
    if len(rows) != chunks:
        raise SystemExit(f"jaxued logged {len(rows)} chunks, expected {chunks}")
    # their own `sps` times the asynchronous dispatch only; the wall clock between logged chunks (whose
    # values the stub waits for) times the work
    seconds = rows[-1]["wall"] - rows[0]["wall"]
    return eval_freq * STEPS_PER_UPDATE * (chunks - 1) / seconds


def ued_round(updates: int, seed: int, threads: int | None, bf16: bool) -> float:
    """Env steps/s of ued's DR training loop (`ued.bench.bench_train`, batched maze backend)."""
    code = (
        "import json, torch\n"
        f"if {threads!r}: torch.set_num_threads({threads!r})\n"
        "from ued.bench import bench_train\n"
        f"r = bench_train('maze', 'dr', 'default', updates={updates}, seed={seed}, bf16={bf16})\n"
        "print(json.dumps(r['steps_per_s']))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    return float(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--venv", default=str(HERE / ".venv"), help="the peers' virtual environment")
    parser.add_argument(
        "--script", default=str(HERE / ".cache" / "maze_dr.py"), help="jaxued's examples/maze_dr.py"
    )
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (median kept)")
    parser.add_argument("--eval-freq", type=int, default=6, help="jaxued updates per timed chunk")
    parser.add_argument(
        "--chunks", type=int, default=3, help="jaxued chunks per round (the first is compile)"
    )
    parser.add_argument("--updates", type=int, default=8, help="ued updates per round (the first is warm-up)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads for ued (default: torch's)")
    parser.add_argument("--bf16", action="store_true", help="ued's LSTM in bfloat16 (PPOConfig.bf16)")
    parser.add_argument("--json", default=None, help="also write the numbers to this file")
    a = parser.parse_args()
    python = str(Path(a.venv) / "bin" / "python")
    if not Path(python).exists() or not Path(a.script).exists():
        raise SystemExit("peers not set up: run benchmarks/peers/setup.sh first")
    jax_sps, ued_sps = [], []
    for r in range(a.rounds):
        jax_sps.append(jaxued_round(python, Path(a.script), a.eval_freq, a.chunks, seed=r))
        ued_sps.append(ued_round(a.updates, seed=r, threads=a.threads, bf16=a.bf16))
        print(f"round {r}: jaxued {jax_sps[-1]:,.0f} steps/s   ued {ued_sps[-1]:,.0f} steps/s", flush=True)
    j, u = statistics.median(jax_sps), statistics.median(ued_sps)
    print(f"median: jaxued {j:,.0f} steps/s   ued {u:,.0f} steps/s   ued / jaxued = {u / j:.2f}x")
    load = os.getloadavg()[0]
    print(f"({os.cpu_count()} cores, load average {load:.1f}; the ratio is the figure to keep)")
    if a.json:
        Path(a.json).write_text(json.dumps({"jaxued": jax_sps, "ued": ued_sps, "ratio": u / j, "load": load}))


if __name__ == "__main__":
    main()
