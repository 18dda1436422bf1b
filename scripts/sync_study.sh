#!/bin/bash
# Copy the finished runs of a study checkout (a second checkout where the sweeps run, e.g. a `git worktree`) into this
# checkout's results/, without checkpoints or locks, then tidy them (scripts/tidy_results.py: one config per run, the
# monitor split stored once, no machine path), so that each finished run can be committed as it lands.
# Usage: scripts/sync_study.sh SOURCE_CHECKOUT [results/verdict/runs]
set -euo pipefail
if [ $# -lt 1 ]; then echo "usage: scripts/sync_study.sh SOURCE_CHECKOUT [results/verdict/runs] (the checkout the sweeps ran in)" >&2; exit 2; fi
src=$(cd "$1" && pwd); sub=${2:-results/verdict/runs}
cd "$(dirname "$0")/.."
py=${PYTHON:-.venv/bin/python}
PYTHONPATH=$PWD $py - "$src/$sub" "$sub" <<'PY'
import shutil, sys
from pathlib import Path
from tc2_nb.experiment import run_finished
src, dst = Path(sys.argv[1]), Path(sys.argv[2])
for d in sorted(p for p in src.glob('*/*') if p.is_dir()):
    if not run_finished(d): continue
    out = dst/d.relative_to(src)
    if (out/'results.csv').exists() and (out/'results.csv').read_bytes() == (d/'results.csv').read_bytes(): continue   # synced before
    out.mkdir(parents=True, exist_ok=True)
    for f in d.rglob('*'):
        if f.is_file() and f.suffix != '.pt' and not f.name.startswith('.'):
            (out/f.relative_to(d)).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(f, out/f.relative_to(d))
    print('synced', out)
PY
PYTHONPATH=$PWD $py scripts/tidy_results.py
