#!/usr/bin/env bash
# Make the peers' virtual environment (never ued's own) and fetch jaxued's maze DR example at a pinned commit.
# Usage: benchmarks/peers/setup.sh [VENV]   (default: benchmarks/peers/.venv)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="${1:-$here/.venv}"
commit=0f8f1284677375b889e4f13a32c9617cd009f8c4   # DramaCow/jaxued main, 2024
python3 -m venv "$venv"
"$venv/bin/pip" install -q jaxued flax optax distrax chex orbax-checkpoint   # wandb: stub/wandb stands in
if [ ! -f "$here/.cache/maze_dr.py" ]; then
  mkdir -p "$here/.cache"
  url="https://raw.githubusercontent.com/DramaCow/jaxued/$commit/examples/maze_dr.py"
  part="$here/.cache/maze_dr.py.part"
  if ! curl -fsSL "$url" -o "$part"; then
    echo "could not download $url; put jaxued's examples/maze_dr.py at $here/.cache/maze_dr.py" >&2
    exit 1
  fi
  mv "$part" "$here/.cache/maze_dr.py"
fi
echo "peers ready: $venv; now run: python benchmarks/peers/peers.py --venv $venv"
