"""task_batching='vmap' (the K tasks of stage 2 in one torch.func.vmap) equals the per-task loop: every method of
METHODS x the inner-step variants, one bilevel_step from identical states. Methods that cannot be batched must warn
once and still give the loop's numbers."""
import copy, warnings
import pytest, torch
from tc2_nb.bilevel import Stage1, bilevel_step, norm_buffer_names
from tc2_nb.core import ConfigError
from tc2_nb.methods import METHODS
from tc2_nb.train_config import TrainConfig, uses_inner_step, VARIANTS
from tc2_nb.trainer import build_method, build_calibrator, representation_dim
from tc2_nb.views import make_augment

torch.set_num_threads(1)
SIZE = 16
SMALL = dict(simclr=dict(proj_hidden_dim=16, proj_output_dim=16), moco=dict(proj_hidden_dim=16, proj_output_dim=16, queue_size=16),
             byol=dict(proj_hidden_dim=16, proj_output_dim=16, pred_hidden_dim=16),
             simsiam=dict(proj_hidden_dim=16, proj_output_dim=16, pred_hidden_dim=8),
             barlow_twins=dict(proj_hidden_dim=16, proj_output_dim=16), swav=dict(proj_hidden_dim=16, proj_output_dim=16, n_prototypes=10),
             vicreg=dict(proj_hidden_dim=16, proj_output_dim=16), mae=dict(decoder_dim=16, decoder_depth=1, decoder_heads=2))
INNER_VARIANTS = [v for v in VARIANTS if uses_inner_step(v)]                  # T, TC2, -Lv, -Lw
FALLS_BACK = {'mae'}                                                           # data-dependent masking: the loop
# float32: measured worst |vmap - loop| / max|loop| over a tensor ~1e-5 (float64 with the losses' float32 casts off:
# ~1e-14, so what is left is rounding, amplified by BatchNorm over 16 samples); rtol 1e-5 plus an atol of 1e-4 of the
# scale of what is compared (a tensor, or all gradients of the model: a bias right before BatchNorm has a zero gradient,
# which both paths give as rounding noise of the other gradients).
RTOL, SCALE_ATOL = 1e-5, 1e-4
N_IMAGES = 32


def _cfg(method, variant):
    bb = (dict(backbone='vit_tiny', backbone_kwargs=dict(depth=1, dim=16, heads=2, patch=4)) if method == 'mae'
          else dict(backbone='small_cnn', backbone_kwargs=dict(widths=(4, 8, 8))))
    return TrainConfig(method=method, method_kwargs=SMALL[method], variant=variant, batch_size=N_IMAGES, n_tasks=4, n_factors=4,
                       device='cpu', dataset='fashion_mnist', **bb)


def _setup(method, variant):
    cfg = _cfg(method, variant)
    torch.manual_seed(0)
    m = build_method(cfg, 1, SIZE).train()
    aug = make_augment(m.recipe, SIZE, 1)
    x = (torch.rand(N_IMAGES, 1, SIZE, SIZE, generator=torch.Generator().manual_seed(1)) * 255).to(torch.uint8)
    cal = build_calibrator(cfg, representation_dim(m, x, aug), method=m) if variant != 'T' else None
    return cfg, m, aug, x, cal


def _run(cfg, m, aug, x, cal, batching):
    s1 = None if cal is None else Stage1(cal, cfg.alphas, mode=cfg.stage1, query_loss=cfg.query_loss)
    g = torch.Generator().manual_seed(2)
    terms, grads = bilevel_step(m, x, aug, g, cfg.variant, s1, cfg.n_tasks, cfg.n_views, cfg.n_support, cfg.beta1,
                                probe=True, task_batching=batching)
    return terms, grads


def _close(a, b, what, scale=None):
    atol = SCALE_ATOL * (b.abs().max().item() if scale is None else scale) + 1e-12
    torch.testing.assert_close(a, b, rtol=RTOL, atol=atol, msg=lambda s: f"{what}: {s}")


@pytest.mark.parametrize('method', sorted(METHODS))
@pytest.mark.parametrize('variant', INNER_VARIANTS)
def test_vmap_equals_loop(method, variant):
    cfg, m0, aug, x, cal0 = _setup(method, variant)
    runs = {}
    for batching in ('loop', 'vmap'):
        m, cal = copy.deepcopy(m0), copy.deepcopy(cal0)
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter('always')
            terms, grads = _run(cfg, m, aug, x, cal, batching)
        runs[batching] = m, cal, terms, grads, [str(x.message) for x in w if 'task_batching' in str(x.message)]
    (ml, cl, tl, gl, wl), (mv, cv, tv, gv, wv) = runs['loop'], runs['vmap']
    assert wl == []
    assert len(wv) == (1 if method in FALLS_BACK else 0), wv
    gmax = max(p.grad.abs().max().item() for p in ml.parameters() if p.grad is not None)
    for (n, pl), pv in zip(ml.named_parameters(), mv.parameters()):
        if pl.grad is None: assert pv.grad is None, n; continue
        _close(pv.grad, pl.grad, f"{method} {variant} grad {n}", gmax)
    for k in ('loss_support', 'loss_query', 'loss'): _close(tv[k], tl[k], f"{method} {variant} {k}")
    assert set(tv) == set(tl)
    _close(gv, gl, f"{method} {variant} probe", gmax)
    bl, bv = dict(ml.named_buffers()), dict(mv.named_buffers())
    names = norm_buffer_names(ml)
    assert names or method == 'mae'                                            # MAE's ViT has LayerNorm only
    for n in names: _close(bv[n], bl[n], f"{method} {variant} buffer {n}")
    if cl is not None:
        for (n, pl), pv in zip(cl.named_parameters(), cv.parameters()): _close(pv, pl, f"{method} {variant} calibrator {n}")


def test_fallback_warns_once_and_sticks():
    cfg, m, aug, x, cal = _setup('mae', 'T')
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter('always')
        for _ in range(2): _run(cfg, m, aug, x, cal, 'vmap')
    assert sum('task_batching' in str(x.message) for x in w) == 1


def test_unknown_task_batching_fails_before_compute():
    with pytest.raises(ConfigError, match='task_batching'): TrainConfig(task_batching='batched').validate()
    cfg, m, aug, x, cal = _setup('simclr', 'T')
    before = copy.deepcopy(m.state_dict())
    with pytest.raises(ConfigError, match='task_batching'): _run(cfg, m, aug, x, cal, 'vamp')
    for k, v in m.state_dict().items(): assert torch.equal(v, before[k])
