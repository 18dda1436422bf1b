"Properties of tc2_nb.evaluate on tiny synthetic data (seconds on one CPU core)."
import math
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import Dataset, TensorDataset
from tc2_nb.core import ConfigError
from tc2_nb.evaluate import (RESULT_COLUMNS, extract_features, knn_predict, knn_accuracy, fit_linear_probe,
                             stratified_sample, probe_table, environment_table, domain_table,
                             leave_one_domain_out_table, semi_supervised_table, load_backbone)

torch.set_num_threads(1)


def brute_force_knn(train_f, train_y, test_f, k, T, n_classes):
    "The definition, one query at a time: k most cosine-similar training points vote exp(sim / T) for their class."
    preds = []
    for q in test_f:
        sims = sorted(((F.cosine_similarity(q, t, dim=0).item(), int(c)) for t, c in zip(train_f, train_y)), key=lambda s: -s[0])
        votes = [0.0] * n_classes
        for s, c in sims[:k]: votes[c] += math.exp(s / T)
        preds.append(max(range(n_classes), key=votes.__getitem__))
    return torch.tensor(preds)


class Images(Dataset):
    def __init__(self, images, labels): self.images, self.labels = images, labels.long()
    def __len__(self): return len(self.images)
    def __getitem__(self, i): return self.images[i], self.labels[i]


def blobs(n, seed, n_classes=3, channels=1, size=8, spurious=None):
    "uint8 images whose class sets which band of rows is bright."
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, n_classes, (n,), generator=g)
    x = torch.rand(n, channels, size, size, generator=g) * 80
    band = size // n_classes
    for c in range(n_classes): x[y == c, :, c * band:(c + 1) * band] += 100
    return Images(x.clamp(0, 255).to(torch.uint8), y)


def small_cnn(channels=1):
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(channels, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten())


@pytest.mark.parametrize('seed,k,T', [(0, 1, 0.1), (1, 5, 0.1), (2, 200, 0.1), (3, 10, 0.5), (4, 30, 0.05)])
def test_knn_equals_brute_force(seed, k, T):
    g = torch.Generator().manual_seed(seed)
    tr, ty, te = torch.randn(60, 5, generator=g), torch.randint(0, 4, (60,), generator=g), torch.randn(25, 5, generator=g)
    fast = knn_predict(tr, ty, te, k=k, temperature=T, n_classes=4, chunk_size=6)
    assert torch.equal(fast, brute_force_knn(tr, ty, te, k, T, 4))


def test_knn_agrees_with_lightly():
    benchmarking = pytest.importorskip('lightly.utils.benchmarking')
    g = torch.Generator().manual_seed(0)
    tr, ty, te = torch.randn(500, 16, generator=g), torch.randint(0, 10, (500,), generator=g), torch.randn(100, 16, generator=g)
    ref = benchmarking.knn_predict(F.normalize(te, dim=1), F.normalize(tr, dim=1).T, ty, 10, knn_k=200, knn_t=0.1)[:, 0]
    assert torch.equal(knn_predict(tr, ty, te), ref)


def test_knn_two_clusters_and_bad_input():
    tr = torch.cat([torch.randn(30, 2) * 0.2 + torch.tensor([2., 2.]), torch.randn(30, 2) * 0.2 - torch.tensor([2., 2.])])
    ty = torch.cat([torch.zeros(30), torch.ones(30)]).long()
    assert knn_accuracy(tr, ty, torch.tensor([[1., 1.5], [-3., -1.]]), torch.tensor([0, 1]), k=10) == 100.0
    with pytest.raises(ConfigError, match='k=0'): knn_predict(tr, ty, tr, k=0)


def test_linear_probe_separable_and_random():
    g = torch.Generator().manual_seed(1)
    y = torch.randint(0, 4, (800,), generator=g)
    x = torch.randn(4, 32, generator=g)[y] * 3 + torch.randn(800, 32, generator=g)
    probe = fit_linear_probe(x[:600], y[:600])
    assert probe.accuracy(x[600:], y[600:]) >= 99
    assert probe.l2 in probe.val_acc
    ry = torch.randint(0, 4, (800,), generator=g)
    chance = fit_linear_probe(x[:600], ry[:600]).accuracy(x[600:], ry[600:])
    assert abs(chance - 25) < 12


def test_stratified_sample():
    labels = torch.tensor([0] * 100 + [1] * 50 + [2] * 3)
    s = stratified_sample(labels, 0.1)
    assert [(labels[s] == c).sum().item() for c in range(3)] == [10, 5, 1]     # at least one per class
    assert torch.equal(s, stratified_sample(labels, 0.1))                     # fixed seed
    assert not torch.equal(s, stratified_sample(labels, 0.1, seed=1))


def test_features_fast_path_matches_dataloader_and_restores_mode():
    ds, net = blobs(50, 0), small_cnn().train()
    f1, y1 = extract_features(net, ds, batch_size=16)
    f2, y2 = extract_features(net, TensorDataset(ds.images, ds.labels), batch_size=7)

    class ItemsOnly(Dataset):
        def __len__(self): return len(ds)
        def __getitem__(self, i): return ds[i]
    f3, y3 = extract_features(net, ItemsOnly(), batch_size=9)
    assert torch.allclose(f1, f2, atol=1e-5) and torch.allclose(f1, f3, atol=1e-5)
    assert torch.equal(y1, ds.labels) and torch.equal(y3, ds.labels)
    assert net.training


def test_probe_table_is_tidy():
    df = probe_table(small_cnn(), blobs(200, 1), blobs(100, 2), dataset='blobs', k=20)
    assert list(df.columns) == RESULT_COLUMNS
    assert set(df.metric) == {'knn_top1', 'linear_top1'} and (df.value > 90).all()


def test_worst_never_above_average():
    envs = {f'e{i}': blobs(60, 10 + i) for i in range(4)}
    df = environment_table(small_cnn(), blobs(200, 3), envs, probes=('linear', 'knn'), k=20)
    v = df.set_index(['environment', 'metric']).value
    for p in ('', 'knn_'):
        assert v[('', f'{p}worst_acc')] <= v[('', f'{p}avg_acc')]
    assert v[('', 'worst_acc')] == df[df.metric == 'linear_top1'].value.min()
    assert len(df) == 2 * (len(envs) + 2)


def test_domain_tables_have_one_row_per_domain():
    domains = {'a': blobs(80, 20), 'b': blobs(80, 21), 'c': (blobs(60, 22), blobs(30, 23))}
    lodo = leave_one_domain_out_table(small_cnn(), domains, dataset='toy', k=20)
    rows = lodo[lodo.metric == 'linear_top1']
    assert list(rows.environment) == list(domains) and len(rows) == 3
    assert lodo.set_index('metric').value['worst_acc'] <= lodo.set_index('metric').value['avg_acc']
    src = domain_table(small_cnn(), domains, sources=['a', 'b'], dataset='toy')
    assert list(src[src.metric == 'linear_top1'].environment) == list(domains)
    with pytest.raises(ConfigError, match="source domain='z'"): domain_table(small_cnn(), domains, sources=['z'])


def test_semi_supervised_leaves_backbone_alone():
    net = small_cnn()
    before = [p.clone() for p in net.parameters()]
    df = semi_supervised_table(net, blobs(300, 30), blobs(100, 31), fractions=(0.1,), steps=20, batch_size=32)
    assert list(df.metric) == ['semi_10pct'] and df.value.iloc[0] > 80
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters()))


def test_load_backbone_formats(tmp_path):
    net, x = small_cnn().eval(), torch.randn(3, 1, 8, 8)
    torch.save({'backbone': net.state_dict(), 'config': {'backbone': 'small_cnn'}}, tmp_path/'ours.pt')
    fresh = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten())
    assert torch.allclose(load_backbone(tmp_path/'ours.pt', backbone=fresh)(x), net(x))
    lightning = {'state_dict': {f'backbone.{k}': v for k, v in net.state_dict().items()} | {'classifier.weight': torch.ones(1)}}
    fresh = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten())
    assert torch.allclose(load_backbone(lightning, backbone=fresh)(x), net(x))
    with pytest.raises(ConfigError, match='lacks'):
        load_backbone({'backbone': {'0.weight': net[0].weight}}, backbone=fresh)
