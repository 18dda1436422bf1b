"""Aggregate the CPU reproduction study (configs/sweeps/cpu_study/*.yaml, run with tc2-sweep) into results/cpu_study/:
results.csv (every run), table.csv (mean ± std), deltas.csv (paired deltas vs base), probe_curves.csv, study.json and
figures; random_init.csv from runs/cpu_study_random_init (configs/sweeps/cpu_study/e_random_init.yaml: the floor).
Run: .venv/bin/python scripts/cpu_study_report.py [runs/cpu_study]"""
import json, platform, shutil, sys
from pathlib import Path
import pandas as pd, yaml
from tc2_nb.core import atomic_write, atomic_write_json
from tc2_nb.sweep import report, probe_curves, collect
from tc2_nb.train_config import TrainConfig

# the grid keys of the study's sweeps; a run that did not set one has the study's value
GRID_KEYS = ('n_tasks', 'n_factors', 'beta1', 'lambda_1', 'epochs')
_study = yaml.safe_load(Path('configs/sweeps/cpu_study/_base.yaml').read_text())
STUDY_DEFAULTS = {k: _study.get(k, getattr(TrainConfig, k)) for k in GRID_KEYS}
def fill_defaults(d):
    "Grid keys a run did not set get the study's value (_base.yaml, else TrainConfig's), so that every row says its value."
    for k, v in STUDY_DEFAULTS.items():
        d[k] = pd.to_numeric(d[k], errors='coerce').fillna(v) if k in d.columns else v
        d[k] = d[k].astype(type(v))
    return d

src = Path(sys.argv[1] if len(sys.argv) > 1 else 'runs/cpu_study')
dst = Path('results/cpu_study'); (dst/'figures').mkdir(parents=True, exist_ok=True)
res = report(src)
df = res['results']
df = fill_defaults(df)
keep = [c for c in ('method', 'variant', *GRID_KEYS, 'seed', 'evaluation', 'dataset', 'environment', 'metric', 'value', 'run') if c in df.columns]
atomic_write(dst/'results.csv', df[keep].to_csv(index=False))
for f in ('table.csv', 'deltas.csv'):
    if (src/f).exists(): shutil.copy(src/f, dst/f)
curves = fill_defaults(probe_curves(src))
atomic_write(dst/'probe_curves.csv', curves[[c for c in ('method', 'variant', *GRID_KEYS, 'seed', 'run', 'step', 'epoch', 'cos_mean', 'neg_share') if c in curves.columns]].to_csv(index=False))
floor_dir = src.parent/(src.name + '_random_init')
if floor_dir.exists():
    fl = fill_defaults(collect(floor_dir))
    atomic_write(dst/'random_init.csv', fl[[c for c in keep if c in fl.columns]].to_csv(index=False))
secs = [json.loads(p.read_text()).get('seconds', 0) for p in list(src.glob('*/summary.json')) + list(floor_dir.glob('*/summary.json'))]
atomic_write_json(dict(runs=int(df.run.nunique()), random_init_runs=int(fl.run.nunique()) if floor_dir.exists() else 0, cpu_minutes=sum(secs) / 60, machine=f"{platform.machine()}, 2 CPU cores, 1 thread per run",
                       sweeps=sorted(str(p) for p in Path('configs/sweeps/cpu_study').glob('[!_]*.yaml'))), dst/'study.json')
for f in (src/'figures').glob('*.png'): shutil.copy(f, dst/'figures'/f.name)
print(res['table'].to_string())
