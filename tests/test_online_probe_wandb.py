"""Issue 31: the online linear probe never touches the encoder (bitwise), reports its validation top-1 at the monitor's
points and resumes exactly; the W&B sink logs a tiny run offline, and a resumed run continues the same W&B run."""
import os, time
import pytest
import torch
from tc2_nb.data import ImageDataset
from tc2_nb.train_config import TrainConfig
from tc2_nb.trainer import pretrain

torch.set_num_threads(1)


def _images(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    base, lab = torch.rand(4, 1, 16, 16, generator=g), torch.arange(n) % 4
    x = (0.7 * base[lab] + 0.3 * torch.rand(n, 1, 16, 16, generator=g)) * 255
    return ImageDataset(x.to(torch.uint8), lab, list('abcd'), 'toy')


DS = _images()


def _cfg(variant='TC2', **kw):
    base = dict(method='simclr', method_kwargs=dict(proj_hidden_dim=32, proj_output_dim=32), variant=variant, epochs=2,
                batch_size=8, n_tasks=4, n_factors=4, probe_every=2, log_every=2, ckpt_every=3, progress=False, device='cpu',
                dataset='fashion_mnist', optimizer='sgd', lr=0.05, lr_scaling='none', warmup_epochs=0, backbone='small_cnn',
                backbone_kwargs=dict(widths=(8, 16, 16)), limit_train=32, monitor_every=1, monitor_val=16, monitor_bank=16,
                monitor_transfer=[])
    return TrainConfig(**{**base, **kw})


@pytest.mark.parametrize('variant', ['base', 'TC2'])
def test_online_linear_leaves_the_encoder_bitwise_unchanged(variant):
    off, on = pretrain(_cfg(variant), DS), pretrain(_cfg(variant, online_linear=True), DS)
    for k, v in off.method.state_dict().items(): assert torch.equal(v, on.method.state_dict()[k]), k
    for k, v in off.calibrator.state_dict().items() if off.calibrator is not None else []:
        assert torch.equal(v, on.calibrator.state_dict()[k]), k
    assert off.log.drop(columns='img_per_s').equals(on.log.drop(columns=['img_per_s', 'online_linear_loss']))
    lin = on.monitor[on.monitor.metric == 'linear_top1']
    assert list(lin.epoch) == [0, 1, 2] and lin.value.between(0, 100).all()
    assert 'linear_top1' not in set(off.monitor.metric)
    assert on.log.online_linear_loss.notna().all() and (on.log.online_linear_loss > 0).all()


def test_online_linear_resumes_exactly(tmp_path):
    whole = pretrain(_cfg(online_linear=True, out_dir=str(tmp_path/'a')), DS)
    pretrain(_cfg(online_linear=True, out_dir=str(tmp_path/'b'), max_steps=5), DS)
    resumed = pretrain(_cfg(online_linear=True, out_dir=str(tmp_path/'b'), resume=True), DS)
    for a, b in ((whole.log, resumed.log), (whole.monitor, resumed.monitor)):
        assert a.drop(columns='img_per_s', errors='ignore').equals(b.drop(columns='img_per_s', errors='ignore'))


def test_online_linear_needs_the_monitor():
    from tc2_nb.core import ConfigError
    with pytest.raises(ConfigError, match='online_linear=True .* set monitor_every > 0'):
        _cfg(online_linear=True, monitor_every=0).validate()


def test_wandb_offline_run_and_resume(tmp_path, monkeypatch):
    pytest.importorskip('wandb')
    from tc2_nb.sinks import read_wandb_offline
    monkeypatch.setenv('WANDB_MODE', 'offline'); monkeypatch.setenv('WANDB_SILENT', 'true')
    out = tmp_path/'run'
    pretrain(_cfg(wandb=True, out_dir=str(out), max_steps=5), DS)
    run_id = (out/'wandb_id').read_text()
    time.sleep(1.1)     # W&B names a session's folder by the second it starts; a second session in that second gets a '-1' suffix
    r = pretrain(_cfg(wandb=True, out_dir=str(out), resume=True), DS)          # the same W&B run goes on
    assert (out/'wandb_id').read_text() == run_id
    sessions = sorted(out.glob('wandb/offline-run-*'))
    assert len(sessions) == 2 and all(s.name.endswith(run_id) for s in sessions)
    curves = read_wandb_offline(out)
    steps = sorted({s for s, _ in curves['loss/loss']})
    assert steps == sorted(r.log.step.tolist())                               # every logged step, once each kept
    last = {s: v for s, v in curves['loss/loss']}
    assert all(abs(last[s] - v) < 1e-6 for s, v in zip(r.log.step, r.log.loss))
    assert {'opt/lr', 'conflict/cos_mean', 'monitor/val/knn_top1', 'loss/loss_query'} <= set(curves)
