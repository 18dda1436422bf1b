"""End-to-end pre-training throughput on the CPU, augmentation included (issue 7): our SimCLR against lightly's.

- `ours`: `tc2_nb.trainer.pretrain`, variant `base` (SimCLR, 2 views): in-memory uint8 batches, the `simclr`
  augmentation recipe on tensors in the training process, the small CNN + SimCLR projector (128-2048-128, BN),
  NT-Xent, SGD; per-step times from the trainer's own log (one log window per step).
- `lightly`: lightly's SimCLR components: `SimCLRTransform` (PIL) in a `torch.utils.data.DataLoader` with
  `--workers` worker processes, `SimCLRProjectionHead(128, 2048, 128)`, `NTXentLoss`, the same small CNN from
  `tc2_nb.backbones`, SGD; two forward passes per step (one per view) as in lightly's examples.
- `ours_tc2`: `pretrain` with variant `TC2` (K=4 tasks, m=4 views, m'=2), to show TC²'s cost in absolute terms.

Same batch (256), same 28 px Fashion-MNIST images, same number of timed steps after `--warmup` untimed ones,
`torch.set_num_threads(--threads)` in the training process. Blur is off in both recipes (SimCLR's small-image
setting; our recipe turns it off below 64 px). lightly's DataLoader workers are extra processes beyond the
training threads: that is how lightly is used, and it is what "their PIL transform in a DataLoader" costs.
Throughput is reported in images/s and view-images/s (images × views per image). The runs take turns
(`--repeats`), so that the load of a shared machine hits all of them alike; the table gives the median step
time and, in brackets, the best step, which other processes' load disturbs least.

    python scripts/bench_throughput.py [--steps 10] [--warmup 3] [--repeats 2] [--threads 2] [--workers 2]
        [--batch 256] [--runs ours,lightly,ours_tc2]
"""
from __future__ import annotations
import argparse, os, statistics, time
import numpy as np
import torch


def _data(n:int):
    from tc2_nb.data import get_dataset
    ds = get_dataset('fashion_mnist', 'train')
    return ds, ds.images[:n]


def run_ours(variant:str, args) -> tuple[list[float], int]:
    "Per-step wall times of `pretrain` (variant `base` or `TC2`) and views per image."
    from tc2_nb.train_config import TrainConfig
    from tc2_nb.trainer import pretrain
    ds, _ = _data(0)
    n = args.batch * (args.warmup + args.steps)
    cfg = TrainConfig(method='simclr', backbone='small_cnn', dataset='fashion_mnist', variant=variant, batch_size=args.batch,
                      epochs=1, limit_train=n, optimizer='sgd', lr=0.06, lr_scaling='none', weight_decay=5e-4, warmup_epochs=0,
                      probe_every=0, log_every=1, ckpt_every=0, progress=False, device='cpu', seed=0)
    r = pretrain(cfg, ds)
    times = (args.batch / r.log.img_per_s).tolist()[args.warmup:]
    return times, (2 if variant == 'base' else cfg.n_views)


class _PILSet(torch.utils.data.Dataset):
    "uint8 (N, 1, H, W) images as PIL 'L' images through `transform`."
    def __init__(self, images, transform): self.images, self.transform = images.numpy(), transform
    def __len__(self): return len(self.images)
    def __getitem__(self, i):
        from PIL import Image
        return self.transform(Image.fromarray(self.images[i, 0], mode='L')), 0


def run_lightly(args) -> tuple[list[float], int]:
    "Per-step wall times of a SimCLR loop built from lightly's components (data loading included)."
    from lightly.loss import NTXentLoss
    from lightly.models.modules import SimCLRProjectionHead
    from lightly.transforms import SimCLRTransform
    from tc2_nb.backbones import get_backbone
    torch.manual_seed(0)
    _, images = _data(args.batch * (args.warmup + args.steps))
    transform = SimCLRTransform(input_size=28, gaussian_blur=0.0, normalize=dict(mean=[0.5], std=[0.5]))
    loader = torch.utils.data.DataLoader(_PILSet(images, transform), batch_size=args.batch, shuffle=True, drop_last=True,
                                         num_workers=args.workers)
    backbone = get_backbone('small_cnn', channels=1, image_size=28)
    head = SimCLRProjectionHead(backbone.out_dim, 2048, 128)
    model = torch.nn.Sequential(backbone, head).train()
    criterion = NTXentLoss(temperature=0.5)
    opt = torch.optim.SGD(model.parameters(), lr=0.06, momentum=0.9, weight_decay=5e-4)
    times, t0 = [], time.perf_counter()
    for (x0, x1), _ in loader:
        loss = criterion(model(x0), model(x1))
        opt.zero_grad(set_to_none=True); loss.backward(); opt.step()
        loss.item()
        t = time.perf_counter(); times.append(t - t0); t0 = t
    return times[args.warmup:], 2


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--steps', type=int, default=10); ap.add_argument('--warmup', type=int, default=3)
    ap.add_argument('--repeats', type=int, default=2); ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--workers', type=int, default=2); ap.add_argument('--batch', type=int, default=256)
    ap.add_argument('--runs', default='ours,lightly,ours_tc2')
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    runs = args.runs.split(',')
    fns = dict(ours=lambda: run_ours('base', args), lightly=lambda: run_lightly(args), ours_tc2=lambda: run_ours('TC2', args))
    times, views, load0 = {r: [] for r in runs}, {}, os.getloadavg()
    for rep in range(args.repeats):
        for r in runs:
            t, views[r] = fns[r]()
            times[r] += t
            print(f"repeat {rep}: {r:9s} median step {statistics.median(t):.3f} s", flush=True)
    print(f"\nload average (1, 5, 15 min) before: {load0}, after: {os.getloadavg()};  threads={args.threads} workers={args.workers} batch={args.batch}")
    print("median step (best step, less sensitive to other processes' load, in brackets)")
    print(f"{'run':10s} {'s/step':>14s} {'img/s':>12s} {'view-img/s':>14s} {'img/s vs lightly':>18s}")
    ref = {k: f(times['lightly']) for k, f in (('med', statistics.median), ('min', min))} if 'lightly' in times else None
    for r in runs:
        cells = []
        for k, f in (('med', statistics.median), ('min', min)):
            s = f(times[r]); img = args.batch / s
            cells.append((s, img, img * views[r], img / (args.batch / ref[k]) if ref else float('nan')))
        (s, i, v, x), (s2, i2, v2, x2) = cells
        print(f"{r:10s} {s:6.3f} ({s2:5.3f}) {i:5.0f} ({i2:4.0f}) {v:6.0f} ({v2:5.0f}) {x:8.2f}x ({x2:4.2f}x)")

if __name__ == '__main__':
    main()
