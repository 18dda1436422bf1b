"""Aggregate the CPU reproduction study (configs/sweeps/cpu_study/*.yaml, run with tc2-sweep) into results/cpu_study/:
results.csv (every run), table.csv (mean ± std), deltas.csv (paired deltas vs base), probe_curves.csv, study.json and
figures. Run: .venv/bin/python scripts/cpu_study_report.py [runs/cpu_study]"""
import json, platform, shutil, sys
from pathlib import Path
import pandas as pd
from tc2_nb.core import atomic_write, atomic_write_json
from tc2_nb.sweep import report, probe_curves

src = Path(sys.argv[1] if len(sys.argv) > 1 else 'runs/cpu_study')
dst = Path('results/cpu_study'); (dst/'figures').mkdir(parents=True, exist_ok=True)
res = report(src)
df = res['results']
keep = [c for c in ('method', 'variant', 'n_tasks', 'seed', 'evaluation', 'dataset', 'environment', 'metric', 'value', 'run') if c in df.columns]
atomic_write(dst/'results.csv', df[keep].to_csv(index=False))
for f in ('table.csv', 'deltas.csv'):
    if (src/f).exists(): shutil.copy(src/f, dst/f)
curves = probe_curves(src)
atomic_write(dst/'probe_curves.csv', curves[[c for c in ('method', 'variant', 'n_tasks', 'seed', 'run', 'step', 'epoch', 'cos_mean', 'neg_share') if c in curves.columns]].to_csv(index=False))
secs = [json.loads(p.read_text()).get('seconds', 0) for p in src.glob('*/summary.json')]
atomic_write_json(dict(runs=int(df.run.nunique()), cpu_minutes=sum(secs) / 60, machine=f"{platform.machine()}, 2 CPU cores, 1 thread per run",
                       sweeps=sorted(str(p) for p in Path('configs/sweeps/cpu_study').glob('[!_]*.yaml'))), dst/'study.json')
for f in (src/'figures').glob('*.png'): shutil.copy(f, dst/'figures'/f.name)
print(res['table'].to_string())
