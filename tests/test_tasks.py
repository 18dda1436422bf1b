"Property checks of the task split and the MAE masks over many random (N, K, m, m') combinations."
import random
import pytest, torch
from tc2_nb.core import ConfigError
from tc2_nb.tasks import split_tasks, task_views, select_views, random_masks

def _combos(n=200, seed=0):
    rng = random.Random(seed)
    for _ in range(n):
        K = rng.randint(1, 16); N = K * rng.randint(1, 12); m = rng.randint(2, 8); ms = rng.randint(1, m - 1)
        yield N, K, m, ms, rng.randrange(2**31)

@pytest.mark.parametrize('N,K,m,ms,seed', list(_combos()))
def test_split_invariants(N, K, m, ms, seed):
    s = split_tasks(N, K, m, ms, generator=torch.Generator().manual_seed(seed))
    assert s.images.shape == (K, N // K) and s.support.shape == (N, ms) and s.query.shape == (N, m - ms)
    assert torch.equal(s.images.flatten().sort().values, torch.arange(N))          # each image in exactly one task
    allv = torch.cat([s.support, s.query], 1).sort(1).values
    assert torch.equal(allv, torch.arange(m).expand(N, m))                         # disjoint, cover all m views
    views = torch.arange(N * m).view(N, m)                                         # id of view j of image i
    seen = []
    for k in range(K):
        sup, qry = task_views(views, s, k, 'support'), task_views(views, s, k, 'query')
        assert sup.shape == (N // K, ms) and qry.shape == (N // K, m - ms)
        assert not set(sup.flatten().tolist()) & set(qry.flatten().tolist())
        assert set((sup // m).flatten().tolist()) == set((qry // m).flatten().tolist()) == set(s.images[k].tolist())
        seen += sup.flatten().tolist() + qry.flatten().tolist()
    assert sorted(seen) == list(range(N * m))                                     # tasks together: every view once
    s2 = split_tasks(N, K, m, ms, generator=torch.Generator().manual_seed(seed))
    assert torch.equal(s.images, s2.images) and torch.equal(s.support, s2.support)

def test_split_is_uniform_enough():
    "Over many draws each view is in the support set about m'/m of the time, and each image in each task about 1/K."
    N, K, m, ms = 8, 4, 4, 1
    g = torch.Generator().manual_seed(0)
    sup_count, task_count = torch.zeros(m), torch.zeros(N, K)
    for _ in range(2000):
        s = split_tasks(N, K, m, ms, generator=g)
        sup_count += torch.bincount(s.support.flatten(), minlength=m)
        task_count[s.images, torch.arange(K)[:, None].expand(K, N // K)] += 1
    torch.testing.assert_close(sup_count / sup_count.sum(), torch.full((m,), 1 / m), atol=0.02, rtol=0)
    torch.testing.assert_close(task_count / 2000, torch.full((N, K), 1 / K), atol=0.05, rtol=0)

@pytest.mark.parametrize('N,K,m,ms,key', [(10, 4, 4, 2, 'batch_size=10'), (8, 4, 4, 4, 'n_support=4'),
                                          (8, 4, 4, 0, 'n_support=0'), (8, 0, 4, 2, 'n_tasks=0'),
                                          (8, -2, 4, 2, 'n_tasks=-2'), (8, 4, 1, 1, 'n_views=1')])
def test_split_errors(N, K, m, ms, key):
    with pytest.raises(ConfigError, match=key): split_tasks(N, K, m, ms)

@pytest.mark.parametrize('seed', range(20))
def test_masks_exact_count(seed):
    rng = random.Random(seed)
    N, m, L, r = rng.randint(1, 6), rng.randint(1, 6), rng.randint(2, 200), rng.uniform(0, 0.95)
    if round(r * L) >= L: r = 0.5
    mk = random_masks(N, m, L, r, generator=torch.Generator().manual_seed(seed))
    assert mk.shape == (N, m, L) and mk.dtype == torch.bool
    assert (mk.sum(-1) == round(r * L)).all()

def test_select_views_picks_the_indexed_views():
    "view_idx[i, j] of image image_idx[i] lands at [i, j]."
    v = torch.randn(4, 3, 2)
    out = select_views(v, torch.tensor([1, 3]), torch.tensor([[0, 2], [1, 1]]))
    assert torch.equal(out[0, 1], v[1, 2]) and torch.equal(out[1, 0], v[3, 1])

@pytest.mark.skipif(not torch.cuda.is_available(), reason='no CUDA device')
def test_split_and_masks_on_cuda_generator():
    g = torch.Generator('cuda').manual_seed(0)
    s = split_tasks(16, 4, 4, 2, generator=g)
    assert s.images.device.type == 'cuda'
    assert torch.equal(s.images.flatten().sort().values.cpu(), torch.arange(16))
    assert random_masks(4, 2, 16, 0.75, generator=g).sum(-1).eq(12).all()
    v = torch.randn(16, 4, 3, device='cuda')
    assert task_views(v, s.to('cpu'), 0).device.type == 'cuda'
