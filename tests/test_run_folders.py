"""Run folders that cannot be hijacked, mixed or mistaken (issue 18) and checkpoints that load weights-only (issue 13):
the payload checkpoint, locks between real processes, honest resume after max_steps, finite checkpoints, sizes that
cannot fit, the run's own weights, and unwritable output folders."""
import json, os, subprocess, sys, textwrap, time
from pathlib import Path
import pandas as pd
import pytest
import torch
import yaml
from tc2_nb.core import CheckpointError, ConfigError, RunLockedError, run_lock
from tc2_nb.evaluate import load_backbone
from tc2_nb.trainer import pretrain, NonFiniteLossError
from tc2_nb.train_config import TrainConfig
from test_trainer import DS, _cfg

torch.set_num_threads(1)
# the CLI's tiny run: 64 real Fashion-MNIST images, batch 16, a narrow CNN, a checkpoint every step
TINY = dict(method='simclr', variant='TC2', dataset='fashion_mnist', limit_train=64, batch_size=16, epochs=4,
            backbone='small_cnn', backbone_kwargs=dict(widths=[8, 16, 16]), n_factors=4, ckpt_every=1, log_every=1,
            probe_every=0, progress=False, device='cpu', evals=['in_domain'], eval_limit_train=200, eval_limit_test=100)
ENV = dict(os.environ, OMP_NUM_THREADS='1')


def _cli(*args, cfg=None, tmp=None, wait=True):
    cmd = [sys.executable, '-m', 'tc2_nb.cli']
    if cfg is not None:
        p = Path(tmp)/f"cfg{time.monotonic_ns()}.yaml"; p.write_text(yaml.safe_dump(cfg)); cmd.append(str(p))
    cmd += list(args)
    if not wait: return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    return subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=600)


class _Payload:
    "What a hostile run folder would carry: code that runs when the pickle is loaded."
    def __init__(self, marker): self.marker = marker
    def __reduce__(self): return (os.system, (f"touch {self.marker}",))


def test_payload_checkpoint_never_runs(tmp_path):
    out = tmp_path/'run'
    pretrain(_cfg('byol', 'TC2', out_dir=str(out), max_steps=3), DS)
    ck = torch.load(out/'checkpoint.pt', weights_only=True)         # our own checkpoint loads weights-only
    ck['extra'] = _Payload(tmp_path/'pwned')
    torch.save(ck, out/'checkpoint.pt')
    with pytest.raises(CheckpointError, match=r"checkpoint\.pt.*pickled Python objects.*fresh=True"):
        pretrain(_cfg('byol', 'TC2', out_dir=str(out)), DS)           # resume
    with pytest.raises(CheckpointError, match='pickled Python objects'):
        load_backbone(out/'checkpoint.pt')
    from tc2_nb.export import export_torchvision_resnet
    with pytest.raises(CheckpointError, match='pickled Python objects'):           # export reads through load_backbone
        export_torchvision_resnet(out/'checkpoint.pt', tmp_path/'r.pt')
    assert not (tmp_path/'pwned').exists()
    r = pretrain(_cfg('byol', 'TC2', out_dir=str(out), fresh=True), DS)   # fresh=True starts over
    assert r.finished and not (tmp_path/'pwned').exists()


def test_own_checkpoints_load_through_load_backbone_with_defaults(tmp_path):
    r = pretrain(_cfg('simclr', 'TC2', out_dir=str(tmp_path), max_steps=3), DS)     # narrow widths: backbone_kwargs matter
    x = torch.rand(3, 1, 16, 16)
    ref = r.backbone.eval()(x)
    for name in ('checkpoint.pt',):
        torch.testing.assert_close(load_backbone(tmp_path/name)(x), ref)
    r = pretrain(_cfg('simclr', 'TC2', out_dir=str(tmp_path)), DS)
    torch.testing.assert_close(load_backbone(tmp_path/'final.pt')(x), r.backbone.eval()(x))
    torch.testing.assert_close(load_backbone(tmp_path/'checkpoint.pt')(x), r.backbone.eval()(x))


@pytest.mark.parametrize('damage', ['truncate', 'random'])
def test_damaged_checkpoint_names_the_file(tmp_path, damage):
    pretrain(_cfg('simclr', 'base', out_dir=str(tmp_path), max_steps=3), DS)
    ck = tmp_path/'checkpoint.pt'
    ck.write_bytes(ck.read_bytes()[:100] if damage == 'truncate' else os.urandom(2000))
    with pytest.raises(CheckpointError, match=r"checkpoint\.pt.*not a readable PyTorch checkpoint.*fresh=True"):
        pretrain(_cfg('simclr', 'base', out_dir=str(tmp_path)), DS)
    with pytest.raises(CheckpointError, match='checkpoint.pt'):
        load_backbone(ck)


def test_second_train_process_is_refused_and_first_is_intact(tmp_path):
    # The first run must outlive the second's start-up (about 3.5 s to its lock check): 12 epochs ended 3.8 s after the
    # first log line on a quiet machine, a race the second sometimes lost; 60 epochs (240 steps) leave a wide margin.
    out, epochs = tmp_path/'run', 60
    first = _cli('--set', f'out_dir={out}', 'lr=0.05', cfg=dict(TINY, epochs=epochs), tmp=tmp_path, wait=False)
    deadline = time.time() + 120
    while not (out/'train_log.csv').exists() and time.time() < deadline: time.sleep(0.2)   # the first is training
    second = _cli('--set', f'out_dir={out}', 'lr=0.2', cfg=dict(TINY, epochs=epochs), tmp=tmp_path)
    assert second.returncode == 2, second.stderr[-2000:]
    assert 'in use by another process' in second.stderr and f"pid {first.pid}" in second.stderr, second.stderr[-2000:]
    assert first.wait(timeout=600) == 0, first.stderr.read()[-2000:]
    log = pd.read_csv(out/'train_log.csv')
    assert list(log.step) == list(range(epochs * 4))                 # 4 steps an epoch, each once
    assert json.loads((out/'config.json').read_text())['lr'] == 0.05                 # recorded once, in config.json
    assert 'lr' not in json.loads((out/'experiment.json').read_text())
    assert (out/'results.csv').exists()


def test_two_sweeps_share_the_work(tmp_path):
    sweep = dict(out_root=str(tmp_path/'sweep'), notebook='none', base=dict(TINY, epochs=3), grid=dict(seed=[0, 1, 2, 3]))
    (tmp_path/'sweep.yaml').write_text(yaml.safe_dump(sweep))
    cmd = [str(Path(sys.executable).parent/'tc2-sweep'), str(tmp_path/'sweep.yaml')]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV) for _ in range(2)]
    outs = [p.communicate(timeout=900) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-2000:] for o in outs]
    import re
    status = [dict(re.findall(r'(seed=\d)\s+(done \(skipped\)|done \(elsewhere\)|done|running elsewhere|failed)', o[0])) for o in outs]
    assert all(len(st) == 4 for st in status), [o[0] for o in outs]
    assert not any('failed' in st.values() for st in status), [o[0] for o in outs]
    for run in status[0]: assert 'done' in (status[0][run], status[1][run]), (run, status)
    assert any(v in ('running elsewhere', 'done (elsewhere)') for st in status for v in st.values()), status   # the second took other points
    for s in range(4):
        log = pd.read_csv(tmp_path/'sweep'/f'seed={s}'/'train_log.csv')
        assert list(log.step) == list(range(12))


def test_max_steps_then_full_run_trains_to_the_end(tmp_path):
    out = tmp_path/'run'
    r1 = _cli('--set', f'out_dir={out}', 'max_steps=1', cfg=TINY, tmp=tmp_path)
    assert r1.returncode == 0, r1.stderr[-2000:]
    assert json.loads((out/'summary.json').read_text())['steps'] == 1
    r2 = _cli('--set', f'out_dir={out}', cfg=TINY, tmp=tmp_path)
    assert r2.returncode == 0, r2.stderr[-2000:]
    s = json.loads((out/'summary.json').read_text())
    assert (s['steps'], s['finished']) == (16, True)
    assert list(pd.read_csv(out/'train_log.csv').step) == list(range(16))


def test_nonfinite_values_are_refused_and_never_checkpointed(tmp_path):
    for bad in ('lr=.nan', 'lr=.inf', 'beta1=.nan'):
        r = _cli('--set', bad, f'out_dir={tmp_path/"x"}', '--check', cfg=TINY, tmp=tmp_path)
        assert r.returncode == 2 and 'must be finite' in r.stderr, (bad, r.stderr[-1000:])
    assert not (tmp_path/'x').exists()

    class NaNAfter(type(pretrain(_cfg('simclr', 'base', max_steps=0), DS).method)):
        "Poisons one weight after the third optimiser step: the losses logged so far are all finite."
        def after_step(self, progress):
            super().after_step(progress)
            self.steps = getattr(self, 'steps', 0) + 1
            if self.steps == 3:
                with torch.no_grad(): next(self.parameters()).view(-1)[0] = float('nan')
    from tc2_nb.trainer import build_method
    cfg = _cfg('simclr', 'base', out_dir=str(tmp_path/'run'), ckpt_every=1, log_every=1, probe_every=0)
    m = build_method(cfg, 1, 16); m.__class__ = NaNAfter
    with pytest.raises(NonFiniteLossError, match=r"NaN or Inf after step 2.*no checkpoint was written.*lr.*warm-up.*step 2\)"):
        pretrain(cfg, DS, method=m)
    ck = torch.load(tmp_path/'run'/'checkpoint.pt', weights_only=True)
    assert ck['step'] == 2 and all(torch.isfinite(v).all() for v in ck['method'].values() if v.is_floating_point())


def test_sizes_that_cannot_fit_are_refused_before_compute(tmp_path):
    r = _cli('--set', 'image_size=100000', '--check', cfg=TINY, tmp=tmp_path)
    assert r.returncode == 2 and 'for the augmentation buffer alone' in r.stderr, r.stderr[-1000:]


def test_unwritable_out_dir_is_a_clear_error(tmp_path):
    (tmp_path/'file').write_text('x')
    with pytest.raises(ConfigError, match='is a file, not a folder'):
        pretrain(_cfg('simclr', 'base', out_dir=str(tmp_path/'file'/'run')), DS)
    r = _cli('--set', f"out_dir={tmp_path/'file'/'run'}", cfg=TINY, tmp=tmp_path)
    assert r.returncode == 2 and 'is a file, not a folder' in r.stderr and 'Traceback' not in r.stderr, r.stderr[-1000:]


def test_read_only_filesystem_fails_check(tmp_path):
    ro = tmp_path/'ro'; ro.mkdir()
    if os.geteuid() != 0 or subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=1m,ro', 'tmpfs', str(ro)]).returncode:
        pytest.skip('needs root and mount to make a read-only filesystem')
    try:
        r = _cli('--set', f'out_dir={ro}/run', '--check', cfg=TINY, tmp=tmp_path)
        assert r.returncode == 2 and 'is not writable' in r.stderr and 'Read-only file system' in r.stderr, r.stderr[-1000:]
        with pytest.raises(ConfigError, match='is not writable'):
            pretrain(_cfg('simclr', 'base', out_dir=str(ro/'run')), DS)
    finally: subprocess.run(['umount', str(ro)])


def test_lock_is_held_for_the_run_and_released_after(tmp_path):
    out = tmp_path/'run'
    code = textwrap.dedent(f"""
        import time
        from tc2_nb.core import run_lock
        with run_lock({str(out)!r}): print('held', flush=True); time.sleep(120)""")
    holder = subprocess.Popen([sys.executable, '-c', code], stdout=subprocess.PIPE, text=True, env=ENV)
    try:
        assert holder.stdout.readline().strip() == 'held'
        with pytest.raises(RunLockedError, match=f"pid {holder.pid}"):
            pretrain(_cfg('simclr', 'base', out_dir=str(out)), DS)
    finally: holder.kill(); holder.wait()
    assert pretrain(_cfg('simclr', 'base', out_dir=str(out)), DS).finished    # a killed holder leaves no stale lock


def test_nonfinite_message_names_the_inner_step():
    "A bi-level run's guard also names the inner step (VICReg TC² blows up there), a plain run's does not."
    from tc2_nb.trainer import _likely_cause
    s = dict(lr=0.3, warmup_steps=30, warmup_epochs=2)
    tc2, base = _likely_cause(s, _cfg('simclr', 'TC2', beta1=0.05)), _likely_cause(s, _cfg('simclr', 'base'))
    assert 'base lr 0.3 after a warm-up of 30 steps = 2 epochs' in tc2 and 'beta1 0.05' in tc2 and 'lower beta1' in tc2
    assert 'beta1' not in base and 'warm-up of 30 steps' in base


@pytest.mark.parametrize('name', ['.lock', 'train_log.csv'])
def test_symlinked_run_file_is_refused_and_its_target_kept(tmp_path, name):
    "A run folder's `.lock` or log planted as a symlink: never truncated or appended through (issue 33)."
    victim, out = tmp_path/'victim.txt', tmp_path/'run'
    victim.write_text('keep\n'); out.mkdir(); (out/name).symlink_to(victim)
    with pytest.raises(ConfigError, match=f"{name}' is a symbolic link"):
        pretrain(_cfg('simclr', 'TC2', out_dir=str(out), max_steps=2), DS)
    assert victim.read_text() == 'keep\n'


def test_disk_full_during_a_checkpoint_names_the_file(tmp_path):
    "A full disk mid-checkpoint: one line that names checkpoint.pt (not torch's '[enforce fail at ...]'), exit 1."
    full = tmp_path/'full'; full.mkdir()
    if os.geteuid() != 0 or subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=96k', 'tmpfs', str(full)]).returncode:
        pytest.skip('needs root to mount a small tmpfs')
    try:
        r = _cli(cfg=dict(TINY, out_dir=str(full/'run')), tmp=tmp_path)
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 1 and 'Traceback' not in r.stderr, r.stderr[-1500:]
        assert "could not write" in lines[-1] and "checkpoint.pt'" in lines[-1] and 'MiB free there' in lines[-1], lines[-1]
        assert not list((full/'run').glob('.*.tmp'))
    finally: subprocess.run(['umount', str(full)])
