"""Method check (issue 19): every method x {base, TC2} trains stably at short and longer schedules and learns.

Grid: the 8 methods x variants {base, TC2} x epochs {20, 5} x seeds {0, 1}, each with its own recipe (every optimiser
value at its default, i.e. `optimizer_defaults` with the warm-up fitted to the run by `tc2_nb.optim.fit_warmup`).
Setting:
- Fashion-MNIST, 4,000 training images (`TrainConfig.limit_train=4000`: the trainer's fixed class-stratified subset),
  batch 256 (15 steps an epoch), no conflict probe (`probe_every=0`), one CPU thread.
- Backbone `small_cnn` for every method but MAE, which needs patch masking: `vit_tiny` (28 px, patch 4), depth 6
  instead of 12 to fit the CPU time (`--mae-depth`), as `scripts/bench_strength.py` does.
- Loss fall: the mean of the training loss (`loss` column of the train log: the method's loss for 'base', the outer
  query loss for TC2) over the first epoch vs over the last epoch; `fall_pct` = 100 (first - last) / |first|.
- kNN (in-domain): k=200, T=0.1 (cosine, exp(sim/T) votes), bank = 10,000 Fashion-MNIST training images (a fixed
  seed-0 class-stratified subset, `--bank`), queries = the 10,000 test images.
- Floor: the random-init backbone built after `seed_everything(seed)` as the trainer builds it, i.e. the very weights
  each run starts from (one per backbone and seed). margin = kNN - floor kNN.
A run whose loss turns non-finite is recorded with status 'nonfinite' and the guard's message.

Order (`--order column`, the default): the 20-epoch seed-0 column for every method x variant, then the 5-epoch seed-0
column, then seed 1 (20, then 5 epochs); so a partial grid has whole columns.

Records: <out>/runs/<run>.json per finished run (atomic), so an interrupted check resumes and skips finished runs;
the trainer's checkpoints (epoch ends) are under --work (not committed), so a half-done run continues from its last
epoch. After every run: <out>/table.csv and <out>/table.md (atomic).

    OMP_NUM_THREADS=1 nice -n 5 python scripts/method_check.py [--methods simclr,...] [--variants base,TC2]
        [--epochs 20,5] [--seeds 0,1] [--out results/method_check] [--work runs/method_check] [--max-runs N]
"""
from __future__ import annotations
import argparse, json, math, time, traceback
from pathlib import Path
import pandas as pd
import torch
from tqdm.auto import tqdm

ALL_METHODS = ('simclr', 'moco', 'byol', 'simsiam', 'barlow_twins', 'swav', 'vicreg', 'mae')
KNN = dict(k=200, temperature=0.1)


def backbone_of(method:str, mae_depth:int) -> tuple[str, dict]:
    return ('vit_tiny', {} if mae_depth == 12 else dict(depth=mae_depth)) if method == 'mae' else ('small_cnn', {})


def run_name(method, variant, epochs, seed, tag:str='') -> str: return f'{method}_{variant}_e{epochs}_s{seed}' + (f'_{tag}' if tag else '')


def parse_sets(items) -> dict:
    "`--set key=value` pairs (values read as YAML) as TrainConfig overrides, e.g. calibrate_targets=false n_factors=256."
    import yaml
    out = {}
    for it in items or []:
        k, sep, v = it.partition('=')
        if not sep: raise SystemExit(f'--set {it!r}: expected key=value')
        out[k] = yaml.safe_load(v)
    return out


def grid(methods, variants, epochs, seeds) -> list[tuple]:
    "Runs in column order: for each seed, for each epoch count, every method x variant."
    return [(m, v, e, s) for s in seeds for e in epochs for m in methods for v in variants]


class Evaluator:
    "kNN accuracy of a backbone: bank = a fixed stratified subset of the training split, queries = the test split."
    def __init__(self, bank_size:int):
        from tc2_nb.data import get_dataset, stratified_subset
        train = get_dataset('fashion_mnist', 'train')
        self.bank = train.subset(stratified_subset(train.labels.numpy(), bank_size, seed=0)) if bank_size < len(train) else train
        self.test = get_dataset('fashion_mnist', 'test')
        self.floors = {}

    def knn(self, backbone) -> float:
        from tc2_nb.evaluate import extract_features, knn_accuracy
        fb, yb = extract_features(backbone, self.bank, device='cpu', progress=False)
        ft, yt = extract_features(backbone, self.test, device='cpu', progress=False)
        return knn_accuracy(fb, yb, ft, yt, **KNN)

    def floor(self, backbone:str, kw:dict, seed:int, cache:Path) -> float:
        "kNN of the random-init backbone (built right after `seed_everything(seed)`, as the trainer does); cached on disk."
        from tc2_nb.core import seed_everything, atomic_write_json
        from tc2_nb.backbones import get_backbone
        key = f"{backbone}{'_d%d' % kw['depth'] if 'depth' in kw else ''}_s{seed}"
        f = cache/f'floor_{key}.json'
        if f.exists(): return json.loads(f.read_text())['knn']
        seed_everything(seed, torch.device('cpu'))
        knn = self.knn(get_backbone(backbone, channels=1, image_size=28, **kw))
        atomic_write_json(dict(backbone=backbone, backbone_kwargs=kw, seed=seed, knn=knn), f)
        return knn


def train_one(method, variant, epochs, seed, args, ev:Evaluator, runs_dir:Path) -> dict:
    from tc2_nb.train_config import TrainConfig
    from tc2_nb.trainer import pretrain, NonFiniteLossError
    bb, bkw = backbone_of(method, args.mae_depth)
    name = run_name(method, variant, epochs, seed, args.tag)
    cfg = TrainConfig(**{**dict(method=method, backbone=bb, backbone_kwargs=dict(bkw), dataset='fashion_mnist', limit_train=args.limit,
                      variant=variant, epochs=epochs, batch_size=args.batch, probe_every=0, log_every=15, ckpt_every=0,
                      seed=seed, device='cpu', progress=False, out_dir=str(Path(args.work)/name), resume=True), **args.overrides})
    row = dict(run=name, method=method, variant=variant, epochs=epochs, seed=seed, settings=args.overrides,
               backbone=bb + (f" (depth {bkw['depth']})" if 'depth' in bkw else ''))
    t0 = time.time()
    try:
        res = pretrain(cfg)
    except NonFiniteLossError as e:
        return dict(row, status='nonfinite', message=str(e).replace(str(Path(args.work).resolve()), args.work), train_min=(time.time() - t0) / 60)
    lf, s = res.log, res.summary
    ep = lf.groupby('epoch')['loss'].mean()
    first, last = float(ep.iloc[0]), float(ep.iloc[-1])
    opt = s['optimizer']
    t1 = time.time()
    knn = ev.knn(res.backbone)
    floor = ev.floor(bb, bkw, seed, runs_dir)
    return dict(row, status='ok', message='', optimizer=opt['optimizer'], lr=opt['lr'], warmup_epochs=opt['warmup_epochs'],
                loss_first=first, loss_last=last, loss_fall=first - last, fall_pct=100 * (first - last) / abs(first),
                knn=knn, random_knn=floor, margin=knn - floor, train_min=(t1 - t0) / 60, eval_s=time.time() - t1)


def markdown(df:pd.DataFrame) -> str:
    cols = ['method', 'variant', 'epochs', 'seed', 'status', 'lr', 'warmup_epochs', 'loss_first', 'loss_last', 'fall_pct',
            'knn', 'random_knn', 'margin', 'train_min']
    head = ['method', 'variant', 'epochs', 'seed', 'status', 'lr', 'warm-up (epochs)', 'loss, first epoch', 'loss, last epoch',
            'fall %', 'kNN %', 'random-init kNN %', 'margin (points)', 'train min']
    if 'settings' in df and df.settings.map(lambda d: isinstance(d, dict) and bool(d)).any():   # diagnosis runs
        df = df.assign(settings=df.settings.map(lambda d: ', '.join(f'{k}={v}' for k, v in d.items()) if isinstance(d, dict) and d else 'default'))
        cols, head = cols[:2] + ['settings'] + cols[2:], head[:2] + ['settings'] + head[2:]
    lines = ['| ' + ' | '.join(head) + ' |', '|' + '---|' * len(head)]
    def fmt(k, v):
        if v is None or (isinstance(v, float) and math.isnan(v)): return '-'
        if k in ('lr',): return f'{v:.3g}'
        if k in ('warmup_epochs', 'train_min'): return f'{v:.2g}' if k == 'warmup_epochs' else f'{v:.1f}'
        if isinstance(v, float): return f'{v:.2f}'
        return str(v)
    for r in df.reindex(columns=cols).to_dict('records'):
        lines.append('| ' + ' | '.join(fmt(k, r[k]) for k in cols) + ' |')
    return '\n'.join(lines)


def write_tables(out:Path, order:list[str]):
    from tc2_nb.core import atomic_write
    rows = [json.loads(p.read_text()) for p in sorted((out/'runs').glob('*.json')) if not p.name.startswith('floor_')]
    if not rows: return None
    df = pd.DataFrame(rows)
    rank = {n: i for i, n in enumerate(order)}
    df = df.assign(_o=df.run.map(lambda n: rank.get(n, len(rank)))).sort_values(['_o', 'run']).drop(columns='_o')
    atomic_write(out/'table.csv', df.to_csv(index=False))
    atomic_write(out/'table.md', markdown(df) + '\n')
    return df


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--methods', default=','.join(ALL_METHODS))
    ap.add_argument('--variants', default='base,TC2')
    ap.add_argument('--epochs', default='20,5')
    ap.add_argument('--seeds', default='0,1')
    ap.add_argument('--limit', type=int, default=4000)
    ap.add_argument('--batch', type=int, default=256)
    ap.add_argument('--bank', type=int, default=10000, help='kNN bank: this many Fashion-MNIST training images')
    ap.add_argument('--mae-depth', type=int, default=6)
    ap.add_argument('--threads', type=int, default=1)
    ap.add_argument('--out', default='results/method_check')
    ap.add_argument('--work', default='runs/method_check', help="the trainer's run folders (checkpoints; not committed)")
    ap.add_argument('--set', nargs='*', default=[], metavar='KEY=VALUE',
                    help='TrainConfig overrides for every run (diagnosis of a recipe); use with --tag and its own --out')
    ap.add_argument('--tag', default='', help='suffix of the run names (e.g. the overrides in short)')
    ap.add_argument('--max-runs', type=int, default=None, help='stop after this many new runs (sizing)')
    args = ap.parse_args()
    args.overrides = parse_sets(args.set)
    torch.set_num_threads(args.threads)
    methods = [m for m in args.methods.split(',') if m]
    for m in methods:
        if m not in ALL_METHODS: raise SystemExit(f"unknown method {m!r}; choose among {ALL_METHODS}")
    variants = [v for v in args.variants.split(',') if v]
    epochs, seeds = [int(e) for e in args.epochs.split(',')], [int(s) for s in args.seeds.split(',')]
    out = Path(args.out); runs_dir = out/'runs'; runs_dir.mkdir(parents=True, exist_ok=True)
    from tc2_nb.core import atomic_write_json, RunLockedError
    todo = grid(methods, variants, epochs, seeds)
    order = [run_name(*r, args.tag) for r in todo]
    ev = Evaluator(args.bank)
    new = 0
    bar = tqdm(todo, desc='method check')
    for m, v, e, s in bar:
        name = run_name(m, v, e, s, args.tag)
        f = runs_dir/f'{name}.json'
        if f.exists(): continue
        if args.max_runs is not None and new >= args.max_runs: break
        bar.set_postfix_str(name)
        try: row = train_one(m, v, e, s, args, ev, runs_dir)
        except RunLockedError as exc:     # another process trains it now and will write its record: not ours to write
            tqdm.write(f'[skipped] {name}: {exc}'); continue
        except Exception as exc:          # record and go on: one broken run must not stop the grid
            row = dict(run=name, method=m, variant=v, epochs=e, seed=s, status='error', message=f'{type(exc).__name__}: {exc}')
            traceback.print_exc()
        atomic_write_json(row, f)
        new += 1
        tqdm.write(f"[{row['status']}] {name}: " + (f"loss {row['loss_first']:.3f} -> {row['loss_last']:.3f} ({row['fall_pct']:.0f} %), "
                   f"kNN {row['knn']:.2f} vs random {row['random_knn']:.2f} ({row['margin']:+.2f}), {row['train_min']:.1f} min"
                   if row['status'] == 'ok' else row['message'][:300]))
        write_tables(out, order)
    df = write_tables(out, order)
    if df is not None: print(markdown(df))


if __name__ == '__main__':
    main()
