"""Data-parallel training (issue 7): two gloo processes against one process on the same global batch.

Exact in principle: the augmentation is deterministic (a fixed function of the image), so a rank's views of an
image are one process's views of it; base SimCLR runs with `sync_bn=True` (BatchNorm over the global batch, as in
one process); TC² keeps plain BatchNorm, whose per-task passes see the same images either way, and the
single-process reference forms its tasks per shard (`task_shards=2`) exactly as the two ranks do.
Plain SGD without momentum, so a gradient off by the world size would show in the parameters directly.

Base SimCLR is compared in float32 (to 1e-5). TC² is compared in float64 (to 1e-9): its stage-1 Adam steps are
about `α·sign(g)` at the start, so float32 rounding of near-zero calibrator gradients (different summation order
on two ranks) becomes `α`-sized differences that the next steps carry on; in float64 the two runs agree to ~1e-14,
which is what "exact in principle" means."""
import functools
import os
import pandas as pd
import pytest
import torch
from tc2_nb.core import ConfigError, seed_everything
from tc2_nb.data import ImageDataset
from tc2_nb.distributed import run_workers
from tc2_nb.train_config import TrainConfig
from tc2_nb.preflight import preflight
from tc2_nb.trainer import pretrain, build_method, build_calibrator

torch.set_num_threads(1)
SIZE = 16


def _images(n=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(4, 1, SIZE, SIZE, generator=g)
    lab = torch.arange(n) % 4
    x = (0.7 * base[lab] + 0.3 * torch.rand(n, 1, SIZE, SIZE, generator=g)) * 255
    return ImageDataset(x.to(torch.uint8), lab, list('abcd'), 'toy')


def fixed_views(x, m, generator=None, dtype=torch.float32):
    "m deterministic views (B, m, C, H, W): shifted, dimmed copies; no randomness at all."
    x = x.to(dtype) / 255
    return torch.stack([torch.roll(x, shifts=i, dims=-1) * (1 - 0.15 * i) + 0.05 * i for i in range(m)], 1)


COMMON = dict(method='simclr', method_kwargs=dict(proj_hidden_dim=32, proj_output_dim=16), backbone='small_cnn',
              backbone_kwargs=dict(widths=(8, 16, 16)), epochs=2, batch_size=16, n_tasks=2, n_factors=4,
              optimizer='sgd', lr=0.1, lr_scaling='none', momentum=0.0, weight_decay=0.0, warmup_epochs=0,
              probe_every=0, log_every=1, ckpt_every=0, progress=False, device='cpu', seed=0)
BASE = dict(COMMON, variant='base', sync_bn=True)
TC2 = dict(COMMON, variant='TC2', alphas=1e-2)
# the other base methods, whose global statistics, targets and queues also go through global_loss/globalise_caches
# (MAE is left out: its masks are random per rank; its loss is per image and needs no gather)
SMALL = dict(moco=dict(proj_hidden_dim=32, proj_output_dim=16, queue_size=16),
             byol=dict(proj_hidden_dim=32, proj_output_dim=16, pred_hidden_dim=32),
             simsiam=dict(proj_hidden_dim=32, proj_output_dim=16, pred_hidden_dim=16),
             barlow_twins=dict(proj_hidden_dim=32, proj_output_dim=16), vicreg=dict(proj_hidden_dim=32, proj_output_dim=16),
             swav=dict(proj_hidden_dim=32, proj_output_dim=16, n_prototypes=10, queue_size=16, freeze_prototypes=0.0))
OTHERS = [dict(BASE, method=m, method_kwargs=kw, max_steps=3) for m, kw in SMALL.items()]


def _train(params:dict, float64:bool=False) -> dict:
    cfg = TrainConfig(**params)
    kw = dict(augment=fixed_views)
    if float64:       # the method and calibrator pretrain would build, in float64 (same seed, same order)
        seed_everything(cfg.seed)
        kw = dict(method=build_method(cfg, 1, SIZE).double(), calibrator=build_calibrator(cfg, 16).double(),
                  augment=functools.partial(fixed_views, dtype=torch.float64))
    r = pretrain(cfg, _images(), **kw)
    cal = {} if r.calibrator is None else {f'cal.{k}': v.detach().clone() for k, v in r.calibrator.named_parameters()}
    return dict(params={**{k: v.detach().clone() for k, v in r.method.named_parameters()}, **cal},
                log=r.log.drop(columns=['img_per_s']).to_dict('list'), steps=r.steps)   # weights-only across processes


def _ranks(cases:list) -> list:
    "Every case `(params, float64)` in turn, in one pair of processes (a run of a process group)."
    return [_train(*c) for c in cases]


def _initial(params:dict) -> dict:
    seed_everything(params['seed'])
    return dict(build_method(TrainConfig(**params), 1, SIZE).named_parameters())


def _close(a:dict, b:dict, atol=1e-5):
    assert a.keys() == b.keys()
    for k in a: torch.testing.assert_close(a[k], b[k], atol=atol, rtol=0, msg=lambda m: f'{k}: {m}')


@pytest.fixture(scope='module')
def two_ranks(tmp_path_factory):
    d = tmp_path_factory.mktemp('ddp')
    cases = [(BASE, False), (TC2, True), (dict(TC2, out_dir=str(d/'full')), False), (dict(TC2, out_dir=str(d/'part'), max_steps=2), False),
             (dict(TC2, out_dir=str(d/'part')), False)] + [(c, True) for c in OTHERS]
    return run_workers(_ranks, 2, (cases,)), d


@pytest.mark.parametrize('i,params,float64,atol', [(0, BASE, False, 1e-4), (1, TC2, True, 1e-9)], ids=['base_simclr', 'tc2_simclr'])
def test_two_ranks_equal_one_process_on_the_global_batch(two_ranks, i, params, float64, atol):
    (rank0, rank1), _ = two_ranks
    one = _train(dict(params, task_shards=2) if params['variant'] != 'base' else params, float64)
    assert rank0[i]['steps'] == one['steps'] == 4
    for k, v in rank0[i]['params'].items(): assert torch.equal(v, rank1[i]['params'][k]), k   # ranks stay identical
    _close(rank0[i]['params'], one['params'], atol)
    log0, log1 = pd.DataFrame(rank0[i]['log']), pd.DataFrame(one['log'])
    cols = [c for c in log1.columns if c not in ('step', 'epoch', 'lr', 'grad_norm_backbone')]
    torch.testing.assert_close(torch.tensor(log0[cols].values), torch.tensor(log1[cols].values), atol=1e-5, rtol=1e-4)
    # float32 sums in another order: measured up to 1.1e-6 (parameters), 1e-6 relative (log) and 7.5e-6 relative (gradient
    # norm) on one machine; the tolerances keep a margin of ~100x for other CPUs' kernels
    torch.testing.assert_close(torch.tensor(log0['grad_norm_backbone'].values),
                               torch.tensor(log1['grad_norm_backbone'].values), atol=0, rtol=1e-3)
    # the updates are far larger than the tolerance: a gradient off by the world size (2x or 1/2x) would fail above
    moved = max((one['params'][k] - p).abs().max().item() for k, p in _initial(params).items())
    assert moved > 1e-2, moved


def test_ranks_write_once_and_resume_exactly(two_ranks):
    (rank0, rank1), d = two_ranks
    assert rank0[3]['steps'] == 2 and rank0[4]['steps'] == 4
    for k, v in rank0[2]['params'].items():
        assert torch.equal(v, rank0[4]['params'][k]), k                  # stopped after 2 steps, resumed: bitwise equal
        assert torch.equal(v, rank1[4]['params'][k]), k
    ck = torch.load(d/'part'/'checkpoint.pt', weights_only=True)
    assert ck['world_size'] == 2 and len(ck['rng_ranks']) == 2 and ck['finished']
    assert (d/'full'/'final.pt').exists() and (d/'full'/'summary.json').exists()
    assert len(open(d/'full'/'train_log.csv').read().strip().splitlines()) == 1 + 4       # one row per step, written by rank 0 only
    with pytest.raises(ConfigError, match='world_size=2 processes'):                       # a 2-rank run resumes with 2 ranks only
        pretrain(TrainConfig(**dict(TC2, out_dir=str(d/'part'), epochs=2)), _images(), augment=fixed_views)


def test_batch_size_must_split_over_ranks_and_tasks(monkeypatch):
    monkeypatch.setenv('WORLD_SIZE', '2')
    with pytest.raises(ConfigError, match=r'batch_size=17 is the global batch .*world_size=2'):
        preflight(TrainConfig(**dict(TC2, batch_size=17)), dataset=False)
    with pytest.raises(ConfigError, match=r'batch_size=12 does not split into n_tasks=4 tasks \(6 images per shard'):
        preflight(TrainConfig(**dict(TC2, batch_size=12, n_tasks=4)), dataset=False)
    with pytest.raises(ConfigError, match='task_shards=4 differs from the world size 2'):
        preflight(TrainConfig(**dict(TC2, task_shards=4)), dataset=False)
    preflight(TrainConfig(**dict(TC2, batch_size=16)), dataset=False)


@pytest.mark.parametrize('j', range(len(OTHERS)), ids=list(SMALL))
def test_every_base_method_sees_the_global_batch(two_ranks, j):
    (rank0, rank1), _ = two_ranks
    i = 5 + j
    one = _train(OTHERS[j], True)
    assert rank0[i]['steps'] == one['steps'] == 3
    _close(rank0[i]['params'], one['params'], 1e-9)
    _close(rank1[i]['params'], one['params'], 1e-9)
