#!/usr/bin/env bash
# The README's first command (the quickstart preset, then ued eval) on seeds 0, 1 and 2, and the figures
# the README quotes: per seed, SimpleCrossingS11N5's solved rate against the random policy's, and the
# student on its own training levels. About a minute per seed on 2 CPU cores. Out of CI.
# usage: benchmarks/quickstart_seeds.sh [OUT]   (default OUT: runs/quickstart-seeds)
set -euo pipefail
out=${1:-runs/quickstart-seeds}
for seed in 0 1 2; do
  if [ ! -f "$out/seed$seed/summary.json" ]; then
    ued train --preset quickstart --seed "$seed" --run-dir "$out/seed$seed" --no-progress
  fi
  ued eval "$out/seed$seed" --json "$out/seed$seed.json" > "$out/seed$seed.eval.txt"
done
python3 - "$out" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
for seed in (0, 1, 2):
    r = json.loads((out / f"seed{seed}.json").read_text())
    rows = {row["level"]: row for row in r["levels"]}
    x = rows["SimpleCrossingS11N5"]
    t = r["training_levels"]
    print(f"seed {seed}: SimpleCrossingS11N5 solved {x['solved_rate']:.2f} (random {x['random_solved_rate']:.2f}); "
          f"own training levels solved {t['solved_rate']:.2f} (random {t['random_solved_rate']:.2f}); "
          f"mean over levels {r['overall']['solved_rate']:.2f} (random {r['overall']['random_solved_rate']:.2f})")
PY
