"""Calibrator diagnosis (issue 19): does TC²'s calibration keep samples apart, or collapse them?

Trains one run of the method check's setting (Fashion-MNIST, 4,000 training images, small CNN, batch 256, seed 0, one
thread) for `--epochs`, logging every step, then measures on one batch of 256 training images, two views each:
- f_w's weights w = f_w(n(z)): mean |w|, the share of |w| < 0.01, and the share of w's variance that is between
  samples (1: every sample has its own weights; 0: one weight vector for all, i.e. a collapsed calibrator);
- mean pairwise cosine of z and of ẑ over the batch's first views (1 = every sample points the same way);
- effective rank (exp of the entropy of the normalised singular values) of z and ẑ;
- for a method with a queue (MoCo): the same for the queue raw and calibrated, and the InfoNCE logits of the
  positive key against the mean and max queue logit, raw and calibrated.
Writes <out>/<method>_<variant>_e<epochs>_s<seed>[_tag].json and the run's train log as CSV next to it.
`--epochs 0` measures the random-init method and calibrator as the trainer builds them (no training, a second).

    OMP_NUM_THREADS=1 python scripts/calibrator_diag.py --method moco [--variant TC2] [--epochs 5] [--set key=value ...]
"""
from __future__ import annotations
import argparse, json, sys
from pathlib import Path
import torch, torch.nn.functional as F

from tc2_nb.monitor import effective_rank as erank, mean_cosine as mean_cos
sys.path.insert(0, str(Path(__file__).parent))
from method_check import parse_sets


def weight_spread(w: torch.Tensor) -> dict:
    between = w.var(0).sum() / (w - w.mean()).pow(2).mean(0).sum().clamp_min(1e-12)
    return dict(w_abs_mean=float(w.abs().mean()), w_small_share=float((w.abs() < 0.01).float().mean()),
                w_between_share=float(between))


@torch.no_grad()
def measure(method, cal, x, augment, seed=0, bn_mode:str='train') -> dict:
    "`bn_mode='train'`: BatchNorm normalises with the batch's statistics, as every pass the loss sees does."
    from tc2_nb.bilevel import make_calibrate
    was = method.training
    method.train(bn_mode == 'train')
    g = torch.Generator().manual_seed(seed)
    views = method.make_views(x, 2, augment, g)
    z = method.embed(views)                                   # (B, 2, d)
    out = dict(bn_mode=bn_mode, z_mean_cos=mean_cos(z[:, 0]), z_erank=erank(z[:, 0]))
    if cal is not None:
        V = cal.factors(z.reshape(-1, z.shape[-1]))
        calibrate = make_calibrate(cal, V)
        zh = calibrate(z)
        out.update(zh_mean_cos=mean_cos(zh[:, 0]), zh_erank=erank(zh[:, 0]), **weight_spread(cal.weights(z[:, 0])))
    t = method.target(views) if hasattr(method, 'queue') else None
    if isinstance(t, torch.Tensor):                           # MoCo: keys, and a queue of past keys
        q, k, Q = F.normalize(z[:, 0], dim=-1), t[:, 1], method.queue
        out.update(queue_mean_cos=mean_cos(Q), queue_erank=erank(Q))
        def logits(q, k, Q):
            pos, neg = (q * k).sum(-1), q @ Q.T
            return dict(pos=float(pos.mean()), neg_mean=float(neg.mean()), neg_max=float(neg.max(1).values.mean()))
        out['logits_raw'] = logits(q, k, Q)
        if cal is not None:
            mt = method.map_targets(t, calibrate)
            out.update(queue_cal_mean_cos=mean_cos(mt.queue), queue_cal_erank=erank(mt.queue),
                       logits_cal=logits(F.normalize(zh[:, 0], dim=-1), mt.keys[:, 1], mt.queue))
    method.train(was)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--method', default='moco'); ap.add_argument('--variant', default='TC2')
    ap.add_argument('--epochs', type=int, default=5); ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--limit', type=int, default=4000); ap.add_argument('--batch', type=int, default=256)
    ap.add_argument('--set', nargs='*', default=[]); ap.add_argument('--tag', default='')
    ap.add_argument('--out', default='results/method_check/diag/calibrator')
    ap.add_argument('--bn-mode', choices=('train', 'eval'), default='train')
    args = ap.parse_args()
    torch.set_num_threads(1)
    from tc2_nb.train_config import TrainConfig
    from tc2_nb.trainer import pretrain
    from tc2_nb.data import get_dataset
    from tc2_nb.views import make_augment
    cfg = TrainConfig(**{**dict(method=args.method, backbone='small_cnn', dataset='fashion_mnist', limit_train=args.limit,
                                variant=args.variant, epochs=args.epochs, batch_size=args.batch, probe_every=0, log_every=1,
                                ckpt_every=0, seed=args.seed, device='cpu', progress=False, out_dir=None),
                         **parse_sets(args.set)})
    ds = get_dataset('fashion_mnist', 'train')
    x = ds.images[torch.randperm(len(ds.images), generator=torch.Generator().manual_seed(1))[:args.batch]]
    name = f'{args.method}_{args.variant}_e{args.epochs}_s{args.seed}' + (f'_{args.tag}' if args.tag else '')
    if args.epochs == 0:                                      # at initialisation, built as the trainer builds them
        from tc2_nb.core import seed_everything
        from tc2_nb.train_config import uses_calibration
        from tc2_nb.trainer import build_method, build_calibrator, representation_dim
        seed_everything(cfg.seed)
        method = build_method(cfg, 1, 28)
        augment = make_augment(method.recipe, 28, 1)
        cal = build_calibrator(cfg, representation_dim(method, x, augment)) if uses_calibration(cfg.variant) else None
        res = None
    else:
        res = pretrain(cfg)
        method, cal, augment = res.method, res.calibrator, make_augment(res.method.recipe, 28, 1)
    rec = dict(run=name, settings=parse_sets(args.set), steps=res.steps if res else 0,
               final_loss=res.summary.get('final_loss') if res else None, **measure(method, cal, x, augment, bn_mode=args.bn_mode))
    out = Path(args.out); out.mkdir(parents=True, exist_ok=True)
    from tc2_nb.core import atomic_write_json
    atomic_write_json(rec, out/f'{name}.json')
    if res is not None: res.log.to_csv(out/f'{name}_train_log.csv', index=False)
    print(json.dumps(rec, indent=1))


if __name__ == '__main__':
    main()
