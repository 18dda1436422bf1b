"""Issue 30's check that the base code path is unchanged since the verdict study's base rows ran: on this machine, a
50-step base run of each method at the commit that landed its rows and at another commit (default: HEAD) must end with
bitwise-equal parameters. A rerun of the whole 1,170-step run on another machine is no such check: float differences
between CPUs grow over the run. Each side runs in its own git worktree and process (one thread).
Usage: python scripts/base_path_check.py [--steps 50] [--against HEAD] [--methods simclr byol barlow_twins] [--out FILE]"""
import argparse, json, os, subprocess, sys, tempfile, textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# method -> (the commit that landed its base rows, the run's own settings as in configs/sweeps/verdict/e_main_*.yaml)
ROWS = {'simclr': ('c13da4c', dict(lr=0.4, method_kwargs=dict(temperature=0.2))),
        'byol': ('c13da4c', dict(lr=1.0, method_kwargs=dict(base_tau=0.99))),
        'barlow_twins': ('4102d6e', {})}

RUN = textwrap.dedent("""
    import json, sys, warnings, yaml, torch
    warnings.filterwarnings('ignore')
    from tc2_nb.experiment import run_experiment
    params = json.loads(sys.argv[1])
    run_experiment(params)
    ck = torch.load(params['out_dir'] + '/checkpoint.pt', weights_only=True)
    torch.save({k: v for k, v in ck['method'].items()}, sys.argv[2])
""")

def run_at(commit:str, method:str, settings:dict, steps:int, work:Path) -> Path:
    "Train `steps` base steps of `method` with the code of `commit`; return the saved parameters' path."
    tree = work/f'tree_{commit}'
    if not tree.exists(): subprocess.run(['git', 'worktree', 'add', '--detach', str(tree), commit], cwd=ROOT, check=True, capture_output=True)
    base = __import__('yaml').safe_load((ROOT/'configs/sweeps/verdict/_base.yaml').read_text())
    params = {**base, **settings, 'method': method, 'variant': 'base', 'seed': 0, 'max_steps': steps, 'evals': [],
              'out_dir': str(work/f'run_{commit}_{method}'), 'progress': False}
    out = work/f'params_{commit}_{method}.pt'
    env = dict(os.environ, PYTHONPATH=str(tree), OMP_NUM_THREADS='1')
    r = subprocess.run([sys.executable, '-c', RUN, json.dumps(params), str(out)], env=env, capture_output=True, text=True)
    if r.returncode: raise SystemExit(f"{method} at {commit} failed:\n{r.stderr[-2000:]}")
    return out

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--steps', type=int, default=50)
    ap.add_argument('--against', default='HEAD')
    ap.add_argument('--out', default='results/verdict/base_path_check.csv')
    ap.add_argument('--methods', nargs='+', default=list(ROWS), choices=list(ROWS))
    a = ap.parse_args()
    import torch, pandas as pd
    against = subprocess.run(['git', 'rev-parse', '--short', a.against], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
    rows = []
    with tempfile.TemporaryDirectory() as d:
        work = Path(d)
        try:
            for method in a.methods:
                commit, settings = ROWS[method]
                old, new = (torch.load(run_at(c, method, settings, a.steps, work), weights_only=True) for c in (commit, against))
                diff = max((old[k] - new[k]).abs().max().item() for k in old if old[k].is_floating_point())
                rows.append(dict(method=method, rows_commit=commit, against=against, steps=a.steps, tensors=len(old),
                                 bitwise_equal=old.keys() == new.keys() and all(torch.equal(old[k], new[k]) for k in old),
                                 max_abs_diff=diff))
                print(rows[-1], flush=True)
        finally:
            for t in work.glob('tree_*'): subprocess.run(['git', 'worktree', 'remove', '--force', str(t)], cwd=ROOT, capture_output=True)
    pd.DataFrame(rows).to_csv(ROOT/a.out, index=False)
    print(pd.DataFrame(rows).to_string(index=False))

if __name__ == '__main__': main()
