"""Speed of the maze backends and of the training loop: a script form of `ued bench`.

    python benchmarks/maze_speed.py                       # env + DR/PAIRED training, both backends, CPU
    python benchmarks/maze_speed.py --no-train --num-envs 32 --num-envs 1024
    python benchmarks/maze_speed.py --device cuda --train-envs 1024 --backend batched --json gpu.json

The implementation lives in `ued.bench` (the command in `ued.cli.bench`) (installed with the package); this file only runs it, so the
script and the command can never disagree. See benchmarks/README.md for the targets.
"""

from __future__ import annotations

from ued.cli.bench import bench

if __name__ == "__main__":
    bench(prog_name="maze_speed.py")
