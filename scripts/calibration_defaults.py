"""Issue 17's comparison: TC² with the calibrator's old defaults vs the new ones (configs/sweeps/calibration_defaults/
{old,new}.yaml), run one point at a time in paired order (seed, method, old then new) so that an interrupted run
still leaves complete pairs; then results/calibration_defaults/{results.csv, deltas.csv} (new − old, paired by seed,
95 % t CIs from tc2_nb.sweep.paired_deltas). Run: python scripts/calibration_defaults.py [--report-only]"""
import json, sys
from pathlib import Path
import pandas as pd
from tc2_nb.core import atomic_write, atomic_write_json
from tc2_nb.sweep import load_sweep, check_sweep, expand_grid, run_sweep, collect, paired_deltas, mean_std_table
from tc2_nb.experiment import run_experiment

arms = {a: load_sweep(f'configs/sweeps/calibration_defaults/{a}.yaml') for a in ('old', 'new')}
root = Path(arms['old']['out_root'])
if '--report-only' not in sys.argv:
    for s in arms.values(): check_sweep(s)
    pts = {a: expand_grid(s['grid']) for a, s in arms.items()}
    order = sorted(range(len(pts['old'])), key=lambda i: (pts['old'][i]['seed'], i))
    for i in order:
        for a in ('old', 'new'):
            run_sweep(lambda params, d: run_experiment(params), arms[a]['base'], {k: [v] for k, v in pts[a][i].items()}, root, progress=False)
df = collect(root)
df['arm'] = ['new' if v is True else 'old' for v in df['calibrate_targets']]
dst = Path('results/calibration_defaults'); dst.mkdir(parents=True, exist_ok=True)
keep = ['method', 'variant', 'arm', 'restore_norm', 'calibrate_targets', 'seed', 'evaluation', 'dataset', 'metric', 'value', 'run']
atomic_write(dst/'results.csv', df[[c for c in keep if c in df.columns]].to_csv(index=False))
d = df.assign(variant=df['arm'])
deltas = paired_deltas(d, treatment='new', control='old', by=('method', 'dataset', 'metric'))
atomic_write(dst/'deltas.csv', deltas.to_csv(index=False))
atomic_write(dst/'table.csv', mean_std_table(d, rows=('method', 'variant'), cols=('dataset', 'metric')).to_csv())
secs = [json.loads(p.read_text()).get('seconds', 0) for p in root.glob('*/summary.json')]
atomic_write_json(dict(runs=int(df.run.nunique()), cpu_minutes=sum(secs) / 60, sweeps=['configs/sweeps/calibration_defaults/old.yaml', 'configs/sweeps/calibration_defaults/new.yaml']), dst/'study.json')
print(deltas.to_string())
