"""Issue 31: what the online linear probe costs per step at the verdict study's setting (SimCLR, small CNN, batch 256,
Fashion-MNIST, configs/sweeps/verdict/_base.yaml), base and TC², on the whole batch and on the eighth of it the probe
uses. Each step is timed without the probe, then the probe's own step on the same batch; medians over the timed
steps (the first is warm-up). Writes results/bench/online_linear.csv.
Usage: OMP_NUM_THREADS=1 python scripts/bench_online_linear.py [--steps 6] [--threads 1]"""
import argparse, dataclasses, statistics, time, warnings
from pathlib import Path
import pandas as pd, torch, yaml

ROOT = Path(__file__).resolve().parents[1]

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--steps', type=int, default=6); ap.add_argument('--threads', type=int, default=1)
    ap.add_argument('--out', default=str(ROOT/'results/bench/online_linear.csv'))
    a = ap.parse_args()
    warnings.filterwarnings('ignore'); torch.set_num_threads(a.threads)
    from tc2_nb.train_config import TrainConfig
    from tc2_nb.trainer import build_run, _device_and_ranks, make_step, train_step, StepWindow
    from tc2_nb.data import get_dataset
    keys = {f.name for f in dataclasses.fields(TrainConfig)}
    base = {k: v for k, v in yaml.safe_load((ROOT/'configs/sweeps/verdict/_base.yaml').read_text()).items() if k in keys}
    full, runs = get_dataset('fashion_mnist', 'train'), {}
    for v in ('base', 'TC2'):
        cfg = TrainConfig(**{**base, 'variant': v, 'method': 'simclr', 'lr': 0.4, 'method_kwargs': dict(temperature=0.2),
                             'online_linear': True})
        run = build_run(cfg, *_device_and_ranks(cfg), full)
        runs[v] = (run, make_step(run), StepWindow(), iter(run.batches(0, 0)))
    t = {k: [] for k in ('base', 'TC2', 'probe_eighth', 'probe_whole')}
    for _ in range(a.steps + 1):
        for v, (run, step, window, batches) in runs.items():
            x, y = next(batches)
            probe, run.online_linear = run.online_linear, None
            t0 = time.perf_counter(); train_step(run, step, window, x, y); t[v].append(time.perf_counter() - t0)
            run.online_linear = probe
            eighth = probe.per_step
            for name, n in (('probe_eighth', eighth), ('probe_whole', None)):
                probe.per_step = n
                t0 = time.perf_counter(); probe.step(run.method.backbone, x, y); t[name].append(time.perf_counter() - t0)
            probe.per_step = eighth
    med = {k: statistics.median(v[1:]) for k, v in t.items()}
    rows = [dict(variant=v, probe=p, step_s=med[v], probe_s=med[f'probe_{p}'], share_pct=100 * med[f'probe_{p}'] / med[v],
                 images=(runs[v][0].online_linear.per_step if p == 'eighth' else base['batch_size']), threads=a.threads)
            for v in ('base', 'TC2') for p in ('eighth', 'whole')]
    df = pd.DataFrame(rows); Path(a.out).parent.mkdir(parents=True, exist_ok=True); df.to_csv(a.out, index=False)
    print(df.to_string(index=False))

if __name__ == '__main__': main()
