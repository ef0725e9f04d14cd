#!/usr/bin/env bash
# One short run on a GPU machine: the CUDA tests, then the GPU benchmark (DR and PAIRED at the published 32
# envs and at 1024 envs). Prints everything and writes gpu_bench_*.json to ${OUT:-.}. About 5 minutes.
# Usage: bash benchmarks/gpu_check.sh   (in a checkout with ued installed, e.g. the README's test set-up)
set -uo pipefail
out=${OUT:-.}
nvidia-smi --query-gpu=name,memory.total --format=csv || true
python -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
python -m pytest -p no:warnings tests/test_cuda.py tests/test_batched_maze.py 2>&1 | tail -5
ued bench --device cuda --no-train --num-envs 32 --num-envs 1024 --num-envs 8192 --backend default \
    --json "$out/gpu_bench_env.json"
for envs in 32 1024; do
    ued bench --device cuda --backend default --train-envs "$envs" --updates 4 --teachers dr,paired \
        --json "$out/gpu_bench_train_$envs.json"
done
