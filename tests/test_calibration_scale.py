"""Issue 17: calibration must not cripple the SSL loss. For every method, under the default restore_norm, the ratio of
its two loss terms on calibrated views stays within 10x of the ratio on raw views, at initialisation and after a few
stage-1 steps; ẑ's Jacobian has rank <= n_f; the trainer's keys reach the calibrator."""
import copy, pytest, torch
from torch.func import jacrev
from tc2_nb.calibration import Calibrator, loss_terms, default_restore_norm
from tc2_nb.backbones import get_backbone
from tc2_nb.methods import build_method, METHODS
from tc2_nb.methods.base import toy_augment
from tc2_nb.bilevel import Stage1, calibrated_target
from tc2_nb.train_config import TrainConfig
from tc2_nb.trainer import build_calibrator

torch.set_num_threads(1)

def small_method(name, seed=0):
    torch.manual_seed(seed)
    if name == 'mae': m = build_method('mae', get_backbone('vit_tiny', 1, 28, depth=2), decoder_dim=32, decoder_depth=1)
    else: m = build_method(name, get_backbone('small_cnn', 1, 28), **dict(moco=dict(queue_size=64), swav=dict(n_prototypes=32)).get(name, {}))
    return m, torch.rand(32, 1, 28, 28)

def _ratio(terms):
    (_, a), (_, b) = terms.items()
    return float(a / b)

@pytest.mark.parametrize('name', list(METHODS))
def test_loss_term_ratio_survives_calibration(name):
    m, x = small_method(name)
    views = m.make_views(x, 4, toy_augment, torch.Generator().manual_seed(0))
    with torch.no_grad(): t, z = m.target(views), m.embed(views)
    cal = Calibrator(z.shape[-1], n_f=16, restore_norm=default_restore_norm(m))
    def ratios():
        with torch.no_grad():
            V = cal.factors(z); fn = lambda u: cal.calibrate(u, V)
            sup = lambda o: o[:, :2] if isinstance(o, torch.Tensor) else (None if o is None else o.select(torch.arange(len(x)), torch.tensor([[0, 1]] * len(x))))
            return _ratio(loss_terms(m, z[:, :2], sup(t))), _ratio(loss_terms(m, fn(z[:, :2]), calibrated_target(m, sup(t), fn, cal)))
    raw, calibrated = ratios()
    assert 0.1 < calibrated / raw < 10, (name, 'init', raw, calibrated)
    s1 = Stage1(cal, alphas=(1e-2,) * 4)
    sel = lambda o, v: None if o is None else (o[:, v] if isinstance(o, torch.Tensor) else o.select(torch.arange(len(x)), torch.tensor([v] * len(x))))
    for _ in range(5): s1.step(m, [z[:, :2]], [z[:, 2:]], [sel(t, [0, 1])], [sel(t, [2, 3])])
    raw, calibrated = ratios()
    assert 0.1 < calibrated / raw < 10, (name, 'after 5 stage-1 steps', raw, calibrated)

def test_vicreg_collapses_without_the_rescale():
    "The failure the default mends: with ẑ of norm <= 1, VICReg's invariance is a negligible share of its loss."
    m, x = small_method('vicreg')
    with torch.no_grad():
        z = m.embed(m.make_views(x, 2, toy_augment, torch.Generator().manual_seed(0)))
        cal = Calibrator(z.shape[-1], n_f=16, restore_norm=False)
        calibrated = _ratio(loss_terms(m, cal.calibrate(z, cal.factors(z))))
    assert calibrated < 1e-3 * _ratio(loss_terms(m, z))

@pytest.mark.parametrize('restore_norm', [False, True, 'batch'])
def test_calibration_jacobian_has_rank_at_most_n_f(restore_norm):
    "Every gradient into z passes through ∂ẑ/∂z, whose rank is at most n_f: the bottleneck of stage 2."
    torch.manual_seed(0)
    d, n_f = 24, 4
    cal = Calibrator(d, n_f=n_f, hidden=32, restore_norm=restore_norm).double()
    z0 = torch.randn(3, d, dtype=torch.float64)
    V = cal.factors(z0).detach()
    J = jacrev(lambda z: cal.calibrate(z, V))(z0).reshape(3 * d, 3 * d)
    assert torch.linalg.matrix_rank(J) <= 3 * n_f                      # per sample: rank <= n_f
    Js = jacrev(lambda z: cal.calibrate(z, V))(z0[0])
    assert torch.linalg.matrix_rank(Js) <= n_f and torch.linalg.matrix_rank(torch.eye(d)) == d

def test_train_config_keys_reach_the_calibrator():
    test = lambda cfg, **kw: build_calibrator(cfg, 256, **kw)     # d ≥ the default n_f (128)
    assert test(TrainConfig(method='vicreg')).restore_norm == 'batch'
    assert test(TrainConfig(method='simclr')).restore_norm is False
    assert test(TrainConfig(method='vicreg', restore_norm=False)).restore_norm is False
    assert test(TrainConfig(method='simclr'), method=type('M', (), {'scale_sensitive': True})()).restore_norm == 'batch'
    c = test(TrainConfig(method='byol', calibrate_targets=False, calib_normalize=False))
    assert (c.calibrate_targets, c.normalize) == (False, False)

def test_byol_and_moco_losses_see_calibrated_targets():
    for name in ('byol', 'moco'):
        m, x = small_method(name)
        views = m.make_views(x, 2, toy_augment, torch.Generator().manual_seed(0))
        with torch.no_grad(): t, z = m.target(views), m.embed(views)
        cal = Calibrator(z.shape[-1], n_f=4)
        V = cal.factors(z); fn = lambda u: cal.calibrate(u, V)
        ct = calibrated_target(m, t, fn, cal)
        keys = ct.keys if name == 'moco' else ct
        assert torch.linalg.matrix_rank(keys.reshape(-1, keys.shape[-1])) <= 4 < torch.linalg.matrix_rank(t.reshape(-1, t.shape[-1]))
        if name == 'moco': assert torch.linalg.matrix_rank(ct.queue) <= 4 and torch.linalg.matrix_rank(m.queue) > 4
        cal.calibrate_targets = False
        assert calibrated_target(m, t, fn, cal) is t
