#!/bin/bash
# Copy the finished runs of a study checkout (default /work/study, where the sweeps run) into this checkout's
# results/, without checkpoints or locks, so that each finished run can be committed as it lands.
# Usage: scripts/sync_study.sh [SOURCE_CHECKOUT] [results/verdict/runs]
set -euo pipefail
src=${1:-/work/study}; sub=${2:-results/verdict/runs}
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
    out.mkdir(parents=True, exist_ok=True)
    for f in d.rglob('*'):
        if f.is_file() and f.suffix != '.pt' and not f.name.startswith('.'):
            (out/f.relative_to(d)).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(f, out/f.relative_to(d))
    print('synced', out)
PY
