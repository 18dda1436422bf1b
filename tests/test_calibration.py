"Longer checks of tc2_nb.calibration: L_v and L_w fits over several seeds, the flat f_v, joint fits, torch.func use."
import pytest, torch
import torch.nn.functional as F
from torch.func import functional_call, grad
from tc2_nb.core import ConfigError
from tc2_nb.calibration import (batch_stats, factor_loss, weight_loss, Calibrator, fit_factors, fit_weights,
                                subspace_max_sin, sparse_factor_data)

torch.set_num_threads(1)

def low_rank_data(n, d, r, seed):
    g = torch.Generator().manual_seed(seed)
    U = torch.linalg.qr(torch.randn(d, r, generator=g))[0]
    return F.normalize(torch.randn(n, r, generator=g) @ U.T, dim=-1), U

@pytest.mark.parametrize('kind,lr,seed', [('shared', 1e-2, 1), ('shared', 1e-2, 2), ('flat', 1e-3, 0)])
def test_lv_recovers_orthonormal_basis_of_data_subspace(seed, kind, lr):
    Z, U = low_rank_data(256, 32, 8, seed)
    torch.manual_seed(seed)
    cal = Calibrator(32, n_f=8, hidden=64, factor_kind=kind)
    V, steps = fit_factors(cal, Z, steps=1500, lr=lr, tol=0.02, target=U)
    assert (V.T @ V - torch.eye(8)).norm() < 0.05
    assert subspace_max_sin(V, U) < 0.1

def test_lv_with_more_factors_than_rank_covers_the_data():
    "r < n_f: V stays orthonormal and every data direction lies in span(V)."
    Z, U = low_rank_data(256, 32, 4, 0)
    torch.manual_seed(0)
    V, _ = fit_factors(Calibrator(32, n_f=8, hidden=64), Z, steps=600)
    assert (V.T @ V - torch.eye(8)).norm() < 0.05
    Q = torch.linalg.qr(V)[0]
    assert torch.linalg.svdvals(Q.T @ U).min() > 0.99
    assert ((Z - Z @ V @ V.T).pow(2).sum() / Z.pow(2).sum()) < 0.01

def test_normalize_makes_calibration_scale_free():
    torch.manual_seed(0)
    cal, z = Calibrator(16, 4, 32), torch.randn(10, 2, 16)
    V1, V2 = cal.factors(z), cal.factors(50 * z)
    torch.testing.assert_close(V1, V2, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(cal.calibrate(z, V1), cal.calibrate(50 * z, V1), atol=1e-5, rtol=1e-4)
    raw = Calibrator(16, 4, 32, normalize=False); raw.load_state_dict(cal.state_dict())
    assert not torch.allclose(raw.calibrate(z, V1), raw.calibrate(50 * z, V1))

@pytest.mark.parametrize('seed', [1, 2])   # seed 0 runs in nbs/07_calibration.ipynb
def test_lw_sparsity_rises_with_l1(seed):
    Z, U = sparse_factor_data(512, 32, 8, seed)
    shares = []
    for lam in [0.001, 0.01, 0.1, 1.0]:
        torch.manual_seed(seed)
        w = fit_weights(Calibrator(32, n_f=8, hidden=64, lambda_1=lam), Z, U, steps=400)
        shares.append((w.abs() < 0.01).float().mean().item())
    assert all(a < b for a, b in zip(shares, shares[1:])), shares
    assert shares[2] - shares[0] > 0.03, shares

def test_lw_without_l1_reconstructs():
    "λ_1 = 0: f_w learns the projection w = z V, so ẑ = w Vᵀ ≈ z on data in span(V)."
    Z, U = low_rank_data(512, 32, 8, 0)
    torch.manual_seed(0)
    w = fit_weights(Calibrator(32, n_f=8, hidden=64, lambda_1=0.), Z, U, steps=400)
    assert ((Z - w @ U.T).pow(2).sum(-1).mean()) < 0.01

def test_joint_fit_of_tc2_loss_calibrates_close_to_z():
    "Minimising L_tc2 over f_v and f_w together (stage 1 without SSL losses): ẑ approaches n(z)."
    Z, U = low_rank_data(256, 32, 8, 1)
    z = Z.view(64, 4, 32) * 7                      # four views per image, unnormalised scale
    torch.manual_seed(0)
    cal = Calibrator(32, n_f=8, hidden=64, lambda_1=0.001)
    opt = torch.optim.Adam(cal.parameters(), 1e-2)
    first = None
    for step in range(600):
        V = cal.factors(z)
        loss = cal.tc2_loss(z, V)
        first = first if first is not None else loss.item()
        opt.zero_grad(); loss.backward(); opt.step()
    with torch.no_grad():
        V = cal.factors(z); zh = cal.calibrate(z, V)
        rel = (zh - F.normalize(z, dim=-1)).pow(2).sum() / F.normalize(z, dim=-1).pow(2).sum()
    assert loss.item() < 0.1 * first and rel < 0.05, (first, loss.item(), rel.item())

def test_lambda_s_and_switches_weight_the_terms():
    torch.manual_seed(0)
    z = torch.randn(12, 3, 16)
    base = Calibrator(16, 4, 32, lambda_s=1.0)
    V = base.factors(z)
    _, t = base.tc2_loss(z, V, return_terms=True)
    for kw, expect in [(dict(lambda_s=2.5), t['L_v'] + 2.5 * t['L_w']), (dict(use_lv=False), t['L_w']),
                       (dict(use_lw=False), t['L_v']), (dict(use_lv=False, use_lw=False), torch.tensor(0.))]:
        c = Calibrator(16, 4, 32, **kw); c.load_state_dict(base.state_dict())
        torch.testing.assert_close(c.tc2_loss(z, V).detach(), expect, atol=1e-5, rtol=1e-5)

def test_sum_reduction_is_the_literal_frobenius_norm():
    V = torch.linalg.qr(torch.randn(8, 3))[0]
    Z = torch.randn(5, 2, 8)
    Zf = Z.reshape(-1, 8)
    literal = (V.T @ V - torch.eye(3)).norm() ** 2 + (Zf - Zf @ V @ V.T).norm() ** 2
    torch.testing.assert_close(factor_loss(V, Z, reduction='sum'), literal, atol=1e-5, rtol=1e-5)

def test_batch_stats_accepts_global_mean_cov():
    from tc2_nb.distributed import global_mean_cov
    z = torch.randn(7, 3, 5)
    torch.testing.assert_close(batch_stats(z, mean_cov=global_mean_cov), batch_stats(z), atol=1e-5, rtol=1e-5)

def test_functional_call_and_torch_func_grad_match_autograd():
    "The trainer may run f_v, f_w functionally (torch.func); gradients must equal plain autograd."
    torch.manual_seed(0)
    cal, z = Calibrator(16, 4, 32), torch.randn(8, 2, 16)
    params = {k: v.detach() for k, v in cal.named_parameters()}
    def loss_fn(p):
        zh, V, l = functional_call(cal, p, (z,))
        return zh.pow(2).mean() + l
    g = grad(loss_fn)(params)
    zh, V, l = cal(z)
    (zh.pow(2).mean() + l).backward()
    for k, p in cal.named_parameters(): torch.testing.assert_close(g[k], p.grad, atol=1e-6, rtol=1e-5)

def test_calibrator_config_errors():
    for kw, msg in [(dict(d=8, n_f=9), 'n_f=9'), (dict(d=8, n_f=4, hidden=0), 'hidden=0'),
                    (dict(d=8, n_f=4, lambda_s=-0.1), 'lambda_s=-0.1'), (dict(d=8, n_f=4, reduction='max'), "reduction='max'"),
                    (dict(d=8.0, n_f=4), 'd=8.0')]:
        with pytest.raises(ConfigError, match=msg): Calibrator(**kw)

@pytest.mark.skipif(not torch.cuda.is_available(), reason='no CUDA device')
def test_runs_on_cuda():
    cal = Calibrator(16, 4, 32).cuda()
    z = torch.randn(8, 2, 5, 16, device='cuda')
    zh, V, loss = cal(z)
    assert zh.device.type == 'cuda' and zh.shape == z.shape and torch.isfinite(loss)
