"""The online monitor (issue 14): curves on a validation split disjoint from the training images, transfer splits,
diagnostics, no effect on training, and exact resume of `monitor.csv`."""
import json
import numpy as np
import pandas as pd
import pytest
import torch
from tc2_nb.train_config import TrainConfig
from tc2_nb.preflight import preflight
from tc2_nb.trainer import pretrain

torch.set_num_threads(1)
RUN = dict(method='simclr', dataset='fashion_mnist', limit_train=256, batch_size=64, epochs=2, backbone='small_cnn',
           backbone_kwargs=dict(widths=(8, 16, 16)), n_factors=4, probe_every=0, log_every=1, progress=False, device='cpu',
           monitor_every=1, monitor_val=200, monitor_bank=150, ckpt_every=1)


def _cfg(**kw): return TrainConfig(**{**RUN, **kw})


@pytest.mark.parametrize('variant', ['base', 'TC2'])
def test_monitor_writes_curves_and_leaves_training_alone(tmp_path, variant):
    r = pretrain(_cfg(variant=variant, out_dir=str(tmp_path/'on'), monitor_transfer=['mnist']))
    m = pd.read_csv(tmp_path/'on'/'monitor.csv')
    assert list(m.columns) == ['step', 'epoch', 'split', 'metric', 'value']
    knn = m[m.metric == 'knn_top1']
    assert sorted(set(knn.step)) == [0, 4, 8] and set(knn.split) == {'val', 'mnist'}
    assert knn.value.between(10, 100).all()                      # ten classes: far above nothing, at most everything
    diag = set(m[m.step == 8].metric)
    assert {'erank_h_views', 'erank_z', 'align_z', 'uniform_z'} <= diag
    assert ({'erank_zhat', 'V_subspace_cos', 'w_near_zero', 'w_entropy'} <= diag) == (variant == 'TC2')
    split = json.loads((tmp_path/'on'/'monitor_split.json').read_text())
    assert len(split['train_indices']) == 256 and len(split['val_indices']) == 200
    assert not set(split['train_indices']) & set(split['val_indices'])
    assert set(split['bank_indices']) <= set(split['train_indices'])
    assert not set(split['mnist_bank_indices']) & set(split['mnist_query_indices'])
    assert 'grad_norm_backbone' in r.log.columns and (r.log.grad_norm_backbone > 0).all()
    off = pretrain(_cfg(variant=variant, monitor_every=0))       # the monitor changes nothing about training
    for k, v in off.method.state_dict().items(): assert torch.equal(v, r.method.state_dict()[k]), k
    cols = [c for c in off.log.columns if c != 'img_per_s']
    assert off.log[cols].equals(r.log[cols])


def test_monitor_resumes_exactly(tmp_path):
    full = pretrain(_cfg(variant='TC2', out_dir=str(tmp_path/'full')))
    pretrain(_cfg(variant='TC2', out_dir=str(tmp_path/'part'), max_steps=6))   # stopped mid-epoch 2
    pretrain(_cfg(variant='TC2', out_dir=str(tmp_path/'part')))
    a, b = (pd.read_csv(tmp_path/d/'monitor.csv') for d in ('full', 'part'))
    pd.testing.assert_frame_equal(a, b)


def test_monitor_split_must_fit():
    from tc2_nb.core import ConfigError
    with pytest.raises(ConfigError, match='monitor_val=70000 validation images do not fit'):
        pretrain(_cfg(monitor_val=70000))
    with pytest.raises(ConfigError, match="monitor_transfer dataset='mnistt'"):
        preflight(_cfg(monitor_transfer=['mnistt']))
