"""tc2_nb.losses against lightly.loss on the same random inputs (agreement to 1e-5).

Where the definitions differ the test says how, and checks the documented relation instead:
- BYOL: lightly has no BYOL loss; BYOL's normalised MSE is 2 + 2 * lightly's NegativeCosineSimilarity.
- MoCo: lightly's MoCo is NTXentLoss with a memory bank; our `infonce` matches it when its bank holds our queue.
  Enqueueing differs only on wrap-around (lightly drops the batch's overflow, we wrap modulo the queue size).
- Barlow Twins: lightly has no `scale` (solo-learn's scale_loss); ours with scale=1 is lightly's loss, and `scale`
  multiplies it. lightly's default lambda is 5e-3, the paper's 0.0051; both are passed explicitly here.
- SwAV: lightly's queue is one tensor per high-resolution crop; ours is one shared queue, so we pass the same one to
  every crop of lightly's. Our Sinkhorn subtracts the global max before exp (cancels in the normalisation).
- MAE: lightly has no MAE loss function (its examples use nn.MSELoss on the masked patches); checked by hand in 05_losses.
"""
import pytest
import torch
import torch.nn.functional as F
from lightly.loss import NTXentLoss, NegativeCosineSimilarity, BarlowTwinsLoss, VICRegLoss, SwaVLoss
from tc2_nb import losses as L

torch.set_num_threads(1)
ATOL = 1e-5


def _rand(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float32)


@pytest.mark.parametrize("temperature", [0.5, 0.2, 0.1])
@pytest.mark.parametrize("batch,dim", [(8, 16), (32, 128)])
def test_nt_xent_matches_lightly(temperature, batch, dim):
    z1, z2 = _rand(batch, dim, seed=1), _rand(batch, dim, seed=2)
    ours = L.nt_xent(z1, z2, temperature)
    theirs = NTXentLoss(temperature=temperature)(z1, z2)
    assert torch.allclose(ours, theirs, atol=ATOL), (ours, theirs)


def test_nt_xent_gradients_match_lightly():
    z1, z2 = _rand(16, 32, seed=3).requires_grad_(), _rand(16, 32, seed=4).requires_grad_()
    g_ours = torch.autograd.grad(L.nt_xent(z1, z2, 0.5), (z1, z2))
    g_theirs = torch.autograd.grad(NTXentLoss(temperature=0.5)(z1, z2), (z1, z2))
    for a, b in zip(g_ours, g_theirs): assert torch.allclose(a, b, atol=ATOL)


@pytest.mark.parametrize("temperature", [0.2, 0.07])
def test_moco_infonce_matches_lightly_memory_bank(temperature):
    q, k, d = 64, 8, 32
    queue = F.normalize(_rand(q, d, seed=5), dim=1)
    z_q, z_k = _rand(k, d, seed=6), _rand(k, d, seed=7)
    crit = NTXentLoss(temperature=temperature, memory_bank_size=(q, d))
    crit.memory_bank.bank = queue.clone()
    theirs = crit(z_q, z_k)            # negatives: the bank; no update since z_q has no grad
    ours = L.infonce(z_q, z_k, queue, temperature)
    assert torch.allclose(ours, theirs, atol=ATOL), (ours, theirs)
    # the symmetrised MoCo v2+ loss is the mean of the two directions
    theirs2 = crit(z_k, z_q)
    assert torch.allclose(L.moco_loss(z_q, z_k, z_q, z_k, queue, temperature), (theirs + theirs2) / 2, atol=ATOL)


def test_negative_cosine_and_byol_match_lightly():
    p, z = _rand(16, 64, seed=8), _rand(16, 64, seed=9)
    theirs = NegativeCosineSimilarity()(p, z)
    assert torch.allclose(L.negative_cosine(p, z), theirs, atol=ATOL)
    assert torch.allclose(L.normalized_mse(p, z), 2 + 2 * theirs, atol=ATOL)   # BYOL: 2 - 2 cos
    p2, z2 = _rand(16, 64, seed=10), _rand(16, 64, seed=11)
    crit = NegativeCosineSimilarity()
    assert torch.allclose(L.simsiam_loss(p, p2, z, z2), (crit(p, z2) + crit(p2, z)) / 2, atol=ATOL)


@pytest.mark.parametrize("lambda_", [0.0051, 5e-3, 0.1])
@pytest.mark.parametrize("batch,dim", [(16, 8), (64, 32)])
def test_barlow_twins_matches_lightly(lambda_, batch, dim):
    z1, z2 = 3 * _rand(batch, dim, seed=12) + 1, _rand(batch, dim, seed=13)
    theirs = BarlowTwinsLoss(lambda_param=lambda_)(z1, z2)
    ours = L.barlow_twins(z1, z2, lambda_=lambda_, scale=1.0)
    assert torch.allclose(ours, theirs, atol=ATOL * max(1.0, theirs.abs().item())), (ours, theirs)
    # solo-learn's scale_loss only multiplies (lightly has no such parameter)
    assert torch.allclose(L.barlow_twins(z1, z2, lambda_=lambda_, scale=0.1), 0.1 * theirs, atol=ATOL * max(1.0, theirs.abs().item()))


@pytest.mark.parametrize("coeffs", [(25.0, 25.0, 1.0), (1.0, 2.0, 3.0)])
def test_vicreg_matches_lightly(coeffs):
    z1, z2 = 0.3 * _rand(32, 16, seed=14), _rand(32, 16, seed=15) + 0.5    # some features under the std hinge
    lam, mu, nu = coeffs
    theirs = VICRegLoss(lambda_param=lam, mu_param=mu, nu_param=nu)(z1, z2)
    ours = L.vicreg(z1, z2, sim_coeff=lam, std_coeff=mu, cov_coeff=nu)
    assert torch.allclose(ours, theirs, atol=ATOL * max(1.0, theirs.abs().item())), (ours, theirs)


@pytest.mark.parametrize("n_views", [2, 3])
def test_swav_matches_lightly(n_views):
    b, k, d = 16, 10, 8
    z = F.normalize(_rand(b, n_views, d, seed=16), dim=-1)
    protos = F.normalize(_rand(k, d, seed=17), dim=-1)
    scores = z @ protos.T                                                # (B, v, K) as SwAV's method computes them
    theirs = SwaVLoss()([scores[:, i] for i in range(n_views)], [])
    ours = L.swav_loss(scores)
    assert torch.allclose(ours, theirs.squeeze(), atol=ATOL), (ours, theirs)


def test_swav_with_queue_matches_lightly():
    b, k, d, q = 8, 6, 8, 24
    z = F.normalize(_rand(b, 2, d, seed=18), dim=-1)
    protos = F.normalize(_rand(k, d, seed=19), dim=-1)
    queue_scores = F.normalize(_rand(q, d, seed=20), dim=-1) @ protos.T
    scores = z @ protos.T
    theirs = SwaVLoss()([scores[:, 0], scores[:, 1]], [], queue_outputs=[queue_scores, queue_scores])
    ours = L.swav_loss(scores, queue_scores=queue_scores)
    assert torch.allclose(ours, theirs.squeeze(), atol=ATOL), (ours, theirs)


def test_sinkhorn_matches_lightly():
    from lightly.loss.swav_loss import sinkhorn
    s = F.normalize(_rand(12, 8, seed=21), dim=-1) @ F.normalize(_rand(5, 8, seed=22), dim=-1).T
    assert torch.allclose(L.sinkhorn(s), sinkhorn(s), atol=ATOL)
