#!/usr/bin/env python
"""Views per second: tc2_nb's batched augmentation against torchvision's per-image PIL pipeline.

Setting (issue 2): 28x28 Fashion-MNIST, m = 4 views per image, batches of 256, on the CPU.
(a) `tc2_nb.views.make_augment(recipe, 28, 1)` on a uint8 batch, torch threads = each of `--threads` (1 and 2);
(b) the same recipe as torchvision's per-image `v2.Compose` (`tc2_nb.views.torchvision_pipeline`) on PIL
    images, in a `DataLoader` with `--workers` (2) worker processes, each item giving its 4 views.
Both produce normalised float views (B, 4, 1, 28, 28). Worker start-up and the first batch are not timed.
On a machine whose cores are busy with other work, 2 torch threads can be many times slower than 1
(OpenMP threads wait on each other), hence both rows.

    .venv/bin/python scripts/bench_views.py [--recipes simclr byol] [--batches 8]
"""
import argparse, time
import torch
from torch.utils.data import DataLoader, Dataset
from PIL import Image
from tc2_nb.data import get_dataset
from tc2_nb.views import make_augment, torchvision_pipeline


class PILViews(Dataset):
    "Like torchvision's FashionMNIST: a PIL image per item, then the per-image pipeline once per view."
    def __init__(self, images, labels, augment, m):
        self.images, self.labels, self.m = images, labels, m
        self.pipes = [torchvision_pipeline(augment, i) for i in range(m)]
    def __len__(self): return len(self.images)
    def __getitem__(self, i):
        im = Image.fromarray(self.images[i, 0].numpy(), mode='L')
        return torch.stack([p(im) for p in self.pipes]), self.labels[i]


def bench_batched(ds, augment, m, bs, n_batches):
    g = torch.Generator().manual_seed(0)
    augment(ds.images[:bs], m, g)                                   # warm-up
    t0 = time.perf_counter()
    for b in range(n_batches):
        v = augment(ds.images[b * bs:(b + 1) * bs], m, g)
    dt = time.perf_counter() - t0
    assert v.shape == (bs, m, 1, 28, 28)
    return n_batches * bs * m / dt


def bench_dataloader(ds, augment, m, bs, n_batches, workers):
    dl = DataLoader(PILViews(ds.images, ds.labels, augment, m), batch_size=bs, shuffle=False, num_workers=workers,
                    persistent_workers=False, prefetch_factor=2 if workers else None)
    it = iter(dl)
    next(it)                                                        # start-up and first batch not timed
    t0 = time.perf_counter()
    for _ in range(n_batches): v, _ = next(it)
    dt = time.perf_counter() - t0
    assert v.shape == (bs, m, 1, 28, 28)
    return n_batches * bs * m / dt


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--recipes', nargs='+', default=['simclr', 'byol'])
    ap.add_argument('--m', type=int, default=4)
    ap.add_argument('--batch-size', type=int, default=256)
    ap.add_argument('--batches', type=int, default=8)
    ap.add_argument('--threads', type=int, nargs='+', default=[1, 2])
    ap.add_argument('--workers', type=int, default=2)
    a = ap.parse_args()
    ds = get_dataset('fashion_mnist', 'train', limit=a.batch_size * (a.batches + 2))
    rows = []
    for r in a.recipes:
        aug = make_augment(r, 28, 1)
        ours = []
        for t in a.threads:
            torch.set_num_threads(t)
            ours.append(bench_batched(ds, aug, a.m, a.batch_size, a.batches))
        tv = bench_dataloader(ds, aug, a.m, a.batch_size, a.batches, a.workers)
        rows.append((r, ours, tv))
    print(f"\n28x28 Fashion-MNIST, m={a.m}, batch {a.batch_size}, {a.batches} timed batches, CPU")
    print(f"(a) batched tc2_nb.views in the main process; (b) torchvision v2 per-image PIL pipeline, DataLoader workers={a.workers}\n")
    head = ' | '.join(f'(a) {t} thread{"s" * (t > 1)}' for t in a.threads)
    print(f"| recipe | {head} | (b) torchvision | best (a) / (b) |")
    print('|---|' + '---:|' * (len(a.threads) + 2))
    for r, ours, tv in rows:
        print(f"| {r} | " + ' | '.join(f'{o:,.0f}' for o in ours) + f" | {tv:,.0f} | {max(ours) / tv:.1f}x |")
    print("(views/s)")


if __name__ == '__main__':
    main()
