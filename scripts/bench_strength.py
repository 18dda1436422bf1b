"""Strength check of the SSL method zoo (issue 3): kNN and linear-probe accuracy of every method in `METHODS`
after a short plain (variant 'base') pre-training run, against a random-init encoder's accuracy as the floor.

Setting (issue 3, "Strength check"):
- Fashion-MNIST, 10,000 training images (`TrainConfig.limit_train=10000`: the trainer's fixed, seed-0,
  class-stratified subset), evaluation on the 10,000 test images.
- Backbone `small_cnn` for every method but MAE, which needs patch masking: `vit_tiny` (28 px, patch 4 -> 49
  patches), with depth 6 instead of 12 by default to fit the CPU time (`--mae-depth`).
- Batch 256, 10 epochs, variant 'base', one CPU thread (another benchmark shares the two cores).
- Each method's recipe optimiser (`optimizer_defaults`: optimiser, lr with its scaling, weight decay, LARS eta),
  but `warmup_epochs=1`: the recipes' 10 warm-up epochs are meant for 1000-epoch runs and would take the whole
  run here. No conflict probe (`probe_every=0`): it is not part of a plain training step.
- kNN: k=200, T=0.1 (cosine, exp(sim/T) votes); linear probe: `tc2_nb.evaluate.probe_table` (L-BFGS logistic
  regression on standardised frozen backbone features, L2 chosen on a 10 % validation split of the same
  10k training images, refit on all of them).
- Floor: the random-init backbones (`small_cnn`, and `vit_tiny` at MAE's depth), built after `seed_everything(seed)`
  as the trainer does, i.e. the very weights the trained encoders start from.

A method is "weak" when it is below the floor (kNN or linear) or more than `--weak-gap` points below the median
of the recipe runs (kNN or linear). Then, unless `--no-alt`, up to two documented lr alternatives are run
(`ALT_LR_FACTORS`, or `--alt method=lr1,lr2`); the recipe run is kept and reported next to them.

Records: runs/strength/<run>.csv per finished run (atomic), runs/strength/train/<run>/ holds the trainer's
checkpoints (epoch ends), so an interrupted benchmark resumes: finished runs are skipped, a half-done run
continues from its last epoch. At the end: runs/strength/table.csv and a markdown table on stdout.

    OMP_NUM_THREADS=1 python scripts/bench_strength.py [--methods simclr,moco,...] [--epochs 10]
        [--mae-depth 6] [--mae-epochs 10] [--threads 1] [--out runs/strength] [--alt mae=1.5e-3] [--no-alt]
        [--lightly]   # also SimCLR from lightly's components + PIL augmentation (issue 3's reference check)
"""
from __future__ import annotations
import argparse, io, json, math, statistics, time
from dataclasses import dataclass, field, replace
from pathlib import Path
import pandas as pd
import torch

ALL_METHODS = ('simclr', 'moco', 'byol', 'simsiam', 'barlow_twins', 'swav', 'vicreg', 'mae')
# lr alternatives (factors of the recipe lr) for a weak method. MAE's recipe lr, 1.5e-4 per 256 images, is set
# for 4096-image batches and 800+ epochs; at batch 256 for 390 steps it barely moves, so try 10x (one alternative only, for CPU time).
ALT_LR_FACTORS = {'mae': (10.0,)}
DEFAULT_ALT_FACTORS = (0.5, 2.0)


@dataclass
class Run:
    name: str                        # file stem under runs/strength
    method: str
    backbone: str
    backbone_kwargs: dict = field(default_factory=dict)
    lr: float|None = None            # None: the recipe's lr
    epochs: int = 10
    note: str = ''
    method_kwargs: dict = field(default_factory=dict)   # hyper-parameters other than the recipe's (diagnostics)


def load_data(limit:int, seed:int=0):
    "The trainer's training subset (same rule as `TrainConfig.limit_train`: seed 0, class-stratified) and the test set."
    from tc2_nb.data import get_dataset, stratified_subset
    train = get_dataset('fashion_mnist', 'train')
    test = get_dataset('fashion_mnist', 'test')
    sub = train.subset(stratified_subset(train.labels.numpy(), limit, seed=0)) if limit < len(train) else train
    return sub, test


def evaluate(backbone, train_ds, test_ds, seed:int) -> dict:
    from tc2_nb.evaluate import probe_table
    t0 = time.time()
    df = probe_table(backbone, train_ds, test_ds, dataset='fashion_mnist', k=200, temperature=0.1, seed=seed, device='cpu')
    acc = dict(zip(df.metric, df.value))
    return dict(knn=acc['knn_top1'], linear=acc['linear_top1'], eval_s=time.time() - t0)


def floor_row(backbone:str, backbone_kwargs:dict, train_ds, test_ds, seed:int) -> dict:
    "Accuracy of the random-init backbone (built as the trainer builds it: right after `seed_everything(seed)`)."
    from tc2_nb.core import seed_everything
    from tc2_nb.backbones import get_backbone
    seed_everything(seed, torch.device('cpu'))
    bb = get_backbone(backbone, channels=train_ds.channels, image_size=train_ds.image_size, **backbone_kwargs)
    r = evaluate(bb, train_ds, test_ds, seed)
    return dict(run=f'floor_{backbone}', method='random-init', backbone=_bb_name(backbone, backbone_kwargs), optimizer='',
                lr=float('nan'), weight_decay=float('nan'), warmup_epochs=float('nan'), epochs=0,
                knn=r['knn'], linear=r['linear'], s_per_epoch=float('nan'), train_min=0.0, eval_s=r['eval_s'],
                final_loss=float('nan'), note='random-init encoder (floor)')


def _bb_name(backbone, kw): return backbone + (f" (depth {kw['depth']})" if 'depth' in kw else '')


def train_row(run:Run, args, train_ds, test_ds) -> dict:
    from tc2_nb.train_config import TrainConfig
    from tc2_nb.trainer import pretrain
    cfg = TrainConfig(method=run.method, method_kwargs=dict(run.method_kwargs), backbone=run.backbone, backbone_kwargs=dict(run.backbone_kwargs),
                      dataset='fashion_mnist', limit_train=args.limit, variant='base', epochs=run.epochs, batch_size=args.batch,
                      lr=run.lr, warmup_epochs=args.warmup, probe_every=0, log_every=13, ckpt_every=0, seed=args.seed,
                      device='cpu', progress=False, out_dir=str(Path(args.out)/'train'/run.name), resume=True)
    t0 = time.time()
    res = pretrain(cfg)
    train_s = time.time() - t0
    s = res.summary
    steps_per_epoch = s['total_steps'] // run.epochs
    opt = s['optimizer']
    ev = evaluate(res.backbone, train_ds, test_ds, args.seed)
    return dict(run=run.name, method=run.method, backbone=_bb_name(run.backbone, run.backbone_kwargs), optimizer=opt['optimizer'],
                lr=opt['lr'], weight_decay=opt['weight_decay'], warmup_epochs=opt['warmup_epochs'], epochs=run.epochs,
                knn=ev['knn'], linear=ev['linear'], s_per_epoch=s['sec_per_step'] * steps_per_epoch,
                train_min=s['sec_per_step'] * s['total_steps'] / 60, eval_s=ev['eval_s'],
                final_loss=s['final_loss'] if s['final_loss'] is not None else float('nan'), note=run.note)


# ---- issue 3's reference: SimCLR from lightly's components and a PIL augmentation pipeline ----
def lightly_simclr_row(args, train_ds, test_ds) -> dict:
    """The same setting through `lightly`'s SimCLR components: `SimCLRTransform` (PIL, per image, 28 px, no blur as in
    our recipe for small images, jitter 0.4/0.4/0.4/0.1 at p 0.8, single channel), `SimCLRProjectionHead(128, 2048, 128)`,
    `NTXentLoss(0.5)`, a shuffled `DataLoader`; the same small_cnn, training subset and optimiser (SimCLR's recipe:
    LARS lr 0.4, wd 1e-4, eta 0.02, clipped, biases/norms excluded; 1 warm-up epoch then cosine, per step), so only the
    components differ. (lightly's own `LARS` has no lr clipping: with lr 0.4 its steps would be 0.4x solo-learn's.)"""
    from PIL import Image
    import torchvision.transforms as T
    from lightly.transforms import SimCLRTransform
    from lightly.models.modules import SimCLRProjectionHead
    from lightly.loss import NTXentLoss
    from tc2_nb.core import seed_everything
    from tc2_nb.backbones import get_backbone
    from tc2_nb.optim import build_optimizer, make_scheduler
    g = seed_everything(args.seed, torch.device('cpu'))
    bb = get_backbone('small_cnn', channels=1, image_size=28)
    head = SimCLRProjectionHead(bb.out_dim, 2048, 128)
    model = torch.nn.Sequential(bb, head)
    tf = SimCLRTransform(input_size=28, cj_strength=0.5, gaussian_blur=0.0, random_gray_scale=0.0,
                         normalize={'mean': [0.5], 'std': [0.5]})
    class Pairs(torch.utils.data.Dataset):
        def __len__(self): return len(train_ds)
        def __getitem__(self, i):
            img = Image.fromarray(train_ds.images[i, 0].numpy(), mode='L')
            return tuple(tf(img))
    loader = torch.utils.data.DataLoader(Pairs(), batch_size=args.batch, shuffle=True, drop_last=True, num_workers=0,
                                         generator=torch.Generator().manual_seed(args.seed))
    steps_per_epoch, epochs = len(loader), args.epochs
    total, warm = steps_per_epoch * epochs, int(round(args.warmup * steps_per_epoch))
    opt = build_optimizer(model, 'lars', 0.4 * args.batch / 256, weight_decay=1e-4, momentum=0.9, lars_eta=0.02,
                          lars_clip=True, exclude_bias_n_norm=True)
    sched = make_scheduler(opt, total, warm)
    crit = NTXentLoss(temperature=0.5)
    model.train()
    t0, loss = time.time(), torch.tensor(float('nan'))
    for ep in range(epochs):
        for x0, x1 in loader:
            # one forward over both views, as our trainer does (BatchNorm statistics over the 2B views)
            z = model(torch.cat([x0, x1]))
            loss = crit(*z.chunk(2))
            opt.zero_grad(set_to_none=True); loss.backward(); opt.step(); sched.step()
        print(f"  lightly simclr epoch {ep + 1}/{epochs} loss {loss.item():.4f} ({time.time() - t0:.0f} s)", flush=True)
    train_s = time.time() - t0
    ev = evaluate(bb, train_ds, test_ds, args.seed)
    return dict(run='lightly_simclr', method='simclr (lightly)', backbone='small_cnn', optimizer='lars',
                lr=0.4 * args.batch / 256, weight_decay=1e-4, warmup_epochs=args.warmup, epochs=epochs, knn=ev['knn'],
                linear=ev['linear'], s_per_epoch=train_s / epochs, train_min=train_s / 60, eval_s=ev['eval_s'],
                final_loss=loss.item(), note='reference: lightly SimCLRProjectionHead + NTXentLoss + PIL SimCLRTransform, our LARS recipe')


# ---- bookkeeping ----
def record(row:dict, out:Path):
    from tc2_nb.core import atomic_write
    buf = io.StringIO(); pd.DataFrame([row]).to_csv(buf, index=False)
    atomic_write(out/f"{row['run']}.csv", buf.getvalue())


def cached(name:str, out:Path) -> dict|None:
    p = out/f'{name}.csv'
    return pd.read_csv(p).iloc[0].to_dict() if p.exists() else None


def get_row(name:str, make, out:Path) -> dict:
    row = cached(name, out)
    if row is not None:
        print(f"[skip] {name}: already done (kNN {row['knn']:.2f}, linear {row['linear']:.2f})", flush=True)
        return row
    print(f"[run ] {name} ...", flush=True)
    t0 = time.time()
    row = make()
    record(row, out)
    print(f"[done] {name}: kNN {row['knn']:.2f} %, linear {row['linear']:.2f} %, {row['s_per_epoch']:.1f} s/epoch, "
          f"{(time.time() - t0) / 60:.1f} min incl. eval", flush=True)
    return row


def weak(row:dict, floors:dict, ref:dict, gap:float) -> str:
    "Why `row` counts as weak ('' if it does not)."
    fl = floors[row['backbone']]
    why = []
    if row['knn'] <= fl['knn']: why.append(f"kNN {row['knn']:.1f} <= floor {fl['knn']:.1f}")
    if row['linear'] <= fl['linear']: why.append(f"linear {row['linear']:.1f} <= floor {fl['linear']:.1f}")
    if row['knn'] < ref['knn'] - gap: why.append(f"kNN {row['knn']:.1f} < median {ref['knn']:.1f} - {gap:g}")
    if row['linear'] < ref['linear'] - gap: why.append(f"linear {row['linear']:.1f} < median {ref['linear']:.1f} - {gap:g}")
    return '; '.join(why)


def markdown(df:pd.DataFrame, floors:dict) -> str:
    lines = ['| run | method | backbone | optimiser, lr, wd | kNN % | linear % | floor kNN / linear % | s/epoch | train min | notes |',
             '|---|---|---|---|---|---|---|---|---|---|']
    for r in df.to_dict('records'):
        fl = floors.get(r['backbone'])
        floor = f"{fl['knn']:.2f} / {fl['linear']:.2f}" if fl else ''
        opt = f"{r['optimizer']}, {r['lr']:.3g}, {r['weight_decay']:.0e}" if isinstance(r['optimizer'], str) and r['optimizer'] else '-'
        spe = f"{r['s_per_epoch']:.1f}" if r['s_per_epoch'] == r['s_per_epoch'] else '-'
        lines.append(f"| {r['run']} | {r['method']} | {r['backbone']} | {opt} | {r['knn']:.2f} | {r['linear']:.2f} | {floor} "
                     f"| {spe} | {r['train_min']:.1f} | {r['note'] if isinstance(r['note'], str) else ''} |")
    return '\n'.join(lines)


def parse_alt(items) -> dict:
    out = {}
    for it in items or []:
        m, _, lrs = it.partition('=')
        out[m] = [float(v) for v in lrs.split(',') if v]
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--methods', default=','.join(ALL_METHODS))
    ap.add_argument('--epochs', type=int, default=10)
    ap.add_argument('--mae-epochs', type=int, default=None, help='epochs for MAE (default: --epochs)')
    ap.add_argument('--mae-depth', type=int, default=6, help='vit_tiny depth for MAE and its floor (12 = full vit_tiny)')
    ap.add_argument('--warmup', type=float, default=1.0, help='warm-up epochs (recipes: 10, for 1000-epoch runs)')
    ap.add_argument('--batch', type=int, default=256)
    ap.add_argument('--limit', type=int, default=10000)
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--threads', type=int, default=1)
    ap.add_argument('--out', default='runs/strength')
    ap.add_argument('--weak-gap', type=float, default=5.0, help='points below the median that make a method weak')
    ap.add_argument('--alt', action='append', help="explicit lr alternatives, e.g. --alt mae=1.5e-3,5e-4 (absolute lrs)")
    ap.add_argument('--kw', action='append', help="diagnostic runs with other method hyper-parameters, e.g. "
                    "--kw barlow_twins:proj_output_dim=512,lambda_=0.002 (recipe optimiser; reported as extra rows)")
    ap.add_argument('--no-alt', action='store_true', help='do not run lr alternatives for weak methods')
    ap.add_argument('--lightly', action='store_true', help="also run issue 3's lightly SimCLR reference")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out); out.mkdir(parents=True, exist_ok=True)
    methods = [m for m in args.methods.split(',') if m]
    for m in methods:
        if m not in ALL_METHODS: raise SystemExit(f"unknown method {m!r}; choose among {ALL_METHODS}")
    mae_kw = {} if args.mae_depth == 12 else dict(depth=args.mae_depth)
    mae_epochs = args.mae_epochs or args.epochs
    train_ds, test_ds = load_data(args.limit, args.seed)
    print(f"Fashion-MNIST: {len(train_ds)} training images (stratified), {len(test_ds)} test images; "
          f"{torch.get_num_threads()} thread(s)", flush=True)
    t_all = time.time()

    # floors
    floors = {}
    bbs = [('small_cnn', {})] if any(m != 'mae' for m in methods) else []
    if 'mae' in methods: bbs.append(('vit_tiny', mae_kw))
    for bb, kw in bbs:
        name = f'floor_{bb}' + (f"_d{kw['depth']}" if 'depth' in kw else '')
        row = get_row(name, lambda: dict(floor_row(bb, kw, train_ds, test_ds, args.seed), run=name), out)
        floors[row['backbone']] = row

    # recipe runs
    def recipe_run(m):
        if m == 'mae':
            note = (f"recipe; vit_tiny depth {args.mae_depth}" if mae_kw else 'recipe; vit_tiny') + \
                   (f", {mae_epochs} epochs" if mae_epochs != args.epochs else '')
            return Run(m, m, 'vit_tiny', mae_kw, None, mae_epochs, note)
        return Run(m, m, 'small_cnn', {}, None, args.epochs, 'recipe')
    rows = {m: get_row(m, lambda m=m: train_row(recipe_run(m), args, train_ds, test_ds), out) for m in methods}

    # lr alternatives for weak methods
    recipe = [r for r in rows.values()]
    ref = dict(knn=statistics.median(r['knn'] for r in recipe), linear=statistics.median(r['linear'] for r in recipe))
    explicit = parse_alt(args.alt)
    extra = []
    for m in methods:
        why = weak(rows[m], floors, ref, args.weak_gap)
        if why: print(f"[weak] {m}: {why}", flush=True)
        if m in explicit: lrs = explicit[m]
        elif why and not args.no_alt: lrs = [rows[m]['lr'] * f for f in ALT_LR_FACTORS.get(m, DEFAULT_ALT_FACTORS)]
        else: continue
        for lr in lrs:
            base = recipe_run(m)
            note = f"lr {lr:.3g} instead of the recipe's {rows[m]['lr']:.3g}" + (f" (recipe run weak: {why})" if why else '') + \
                   base.note.replace('recipe', '', 1)
            run = replace(base, name=f'{m}_lr{lr:.3g}', lr=lr, note=note)
            extra.append(get_row(run.name, lambda run=run: train_row(run, args, train_ds, test_ds), out))
    for it in args.kw or []:
        m, _, kvs = it.partition(':')
        kw = {k: json.loads(v) for k, v in (kv.split('=') for kv in kvs.split(',') if kv)}
        base = recipe_run(m)
        run = replace(base, name=m + '_' + '_'.join(f'{k}{v}' for k, v in kw.items()), method_kwargs=kw,
                      note=f"diagnostic: {kw} (not the recipe)" + base.note.replace('recipe', '', 1))
        extra.append(get_row(run.name, lambda run=run: train_row(run, args, train_ds, test_ds), out))
    if args.lightly:
        extra.append(get_row('lightly_simclr', lambda: lightly_simclr_row(args, train_ds, test_ds), out))

    # table
    table = pd.DataFrame(list(floors.values()) + list(rows.values()) + extra)
    for r in table.to_dict('records'):
        fl = floors.get(r['backbone'])
        if fl is not None and r['method'] != 'random-init':
            if r['knn'] <= fl['knn'] or r['linear'] <= fl['linear']: print(f"[BELOW FLOOR] {r['run']}", flush=True)
    from tc2_nb.core import atomic_write
    atomic_write(out/'table.csv', table.to_csv(index=False))
    print(f"\nStrength check: Fashion-MNIST, {len(train_ds)} train / {len(test_ds)} test images, batch {args.batch}, "
          f"{args.epochs} epochs (MAE {mae_epochs}), warm-up {args.warmup:g} epoch(s) then cosine, kNN k=200 T=0.1, "
          f"{torch.get_num_threads()} CPU thread(s); wall {(time.time() - t_all) / 60:.1f} min this call\n")
    print(markdown(table, floors), flush=True)


if __name__ == '__main__':
    main()
