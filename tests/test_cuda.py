"""The CUDA paths (skipped without a GPU; CI has none, `scripts/gpu_check.py` and a lent GPU run them): every method
trains with bf16 and channels_last, a resumed run equals an uninterrupted one bitwise with `deterministic=True`, the
sync-free augmentation gives the CPU views, and the evaluators run on a CUDA backbone."""
import math
import pytest
import torch
from test_trainer import _cfg, DS, CASES
from tc2_nb.trainer import pretrain
from tc2_nb.views import make_augment
from tc2_nb.evaluate import probe_table

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason='no CUDA device')


@pytest.mark.parametrize('method', sorted({m for m, _ in CASES}))
@pytest.mark.parametrize('variant', ['base', 'TC2'])
def test_every_method_trains_on_cuda(method, variant):
    r = pretrain(_cfg(method, variant, max_steps=2, device='cuda'), DS)
    assert r.steps == 2 and all(math.isfinite(v) for v in r.log.loss)
    assert next(r.method.parameters()).device.type == 'cuda'


@pytest.mark.parametrize('variant', ['base', 'TC2'])
def test_cuda_resume_is_bitwise_when_deterministic(tmp_path, variant):
    kw = dict(device='cuda', deterministic=True)
    full = pretrain(_cfg('byol', variant, out_dir=str(tmp_path/'full'), **kw), DS)
    pretrain(_cfg('byol', variant, out_dir=str(tmp_path/'part'), max_steps=5, **kw), DS)
    resumed = pretrain(_cfg('byol', variant, out_dir=str(tmp_path/'part'), **kw), DS)
    assert resumed.finished and resumed.steps == full.steps
    for k, v in full.method.state_dict().items(): assert torch.equal(v, resumed.method.state_dict()[k]), k


@pytest.mark.parametrize('recipe', ['simclr', 'byol'])
def test_sync_free_views_equal_the_cpu_views(recipe):
    aug = make_augment(recipe, 28, 3)
    x = (torch.rand(32, 3, 32, 32) * 255).to(torch.uint8)
    params = aug.sample_params(32, 4, 32, 32, torch.Generator().manual_seed(0))
    cpu = aug.apply(x, params, 4)
    gpu = aug.cuda().apply(x.cuda(), params, 4).cpu()
    assert (cpu - gpu).abs().max() < 1e-3 and cpu.std() > 0.1


def test_evaluators_on_a_cuda_backbone():
    r = pretrain(_cfg('simclr', 'base', max_steps=2, device='cuda'), DS)
    t = probe_table(r.backbone.eval(), DS, DS, dataset='toy', device='cuda')
    assert set(t.metric) == {'knn_top1', 'linear_top1'} and t.value.between(0, 100).all()
