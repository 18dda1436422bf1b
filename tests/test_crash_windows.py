"""Every crash window closes (issue 33): a run killed (os._exit(137), as kill -9) in the middle of each of its atomic
writes, injected by `TC2_NB_KILL_AT` rather than timed, is rerun and ends with the same files as an uninterrupted run:
the same results, final weights, logs and summary, and no temporary file left behind."""
import json, os, subprocess, sys
from pathlib import Path
import pandas as pd
import pytest
import torch
import yaml

TINY = dict(method='simclr', variant='TC2', dataset='fashion_mnist', limit_train=64, batch_size=16, epochs=2,
            backbone='small_cnn', backbone_kwargs=dict(widths=[8, 16, 16]), n_factors=4, ckpt_every=1, log_every=1,
            probe_every=0, progress=False, device='cpu', evals=['in_domain'], eval_limit_train=200, eval_limit_test=100)
TIMING = ('seconds', 'sec_per_step', 'steps_run')          # the wall clock differs between any two runs


def _train(out:Path, kill_at:str|None=None) -> subprocess.CompletedProcess:
    cfg = out.parent/f'{out.name}.yaml'
    cfg.write_text(yaml.safe_dump(dict(TINY, out_dir=str(out))))
    env = {k: v for k, v in os.environ.items() if k != 'TC2_NB_KILL_AT'} | dict(OMP_NUM_THREADS='1')
    if kill_at: env['TC2_NB_KILL_AT'] = kill_at
    return subprocess.run([sys.executable, '-m', 'tc2_nb.cli', str(cfg)], capture_output=True, text=True, env=env, timeout=600)


@pytest.fixture(scope='module')
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp('crash')/'whole'
    r = _train(out)
    assert r.returncode == 0, r.stderr
    return out


def _same_files(a:Path, b:Path):
    names = sorted(f.name for f in a.iterdir() if f.name != '.lock')
    assert names == sorted(f.name for f in b.iterdir() if f.name != '.lock')   # nothing missing, no temporary left
    assert (a/'results.csv').read_text() == (b/'results.csv').read_text()
    fa, fb = (torch.load(d/'final.pt', weights_only=True) for d in (a, b))
    for k, v in fa['method'].items(): assert torch.equal(v, fb['method'][k]), k
    la, lb = (pd.read_csv(d/'train_log.csv').drop(columns='img_per_s') for d in (a, b))
    pd.testing.assert_frame_equal(la, lb)
    sa, sb = (json.loads((d/'summary.json').read_text()) for d in (a, b))
    assert {k: v for k, v in sa.items() if k not in TIMING} == {k: v for k, v in sb.items() if k not in TIMING}


@pytest.mark.parametrize('kill_at', ['config.json:1', 'experiment.json:1', 'checkpoint.pt:1', 'checkpoint.pt:6',
                                     'final.pt:1', 'summary.json:1', 'results.csv:1', 'summary.json:2'])
def test_killed_at_each_write_then_rerun_equals_whole_run(reference, kill_at):
    out = reference.parent/kill_at.replace(':', '_')
    killed = _train(out, kill_at)
    assert killed.returncode == 137, (killed.returncode, killed.stderr[-500:])
    assert any(out.glob('.*.tmp'))                                 # it died mid-write, with the temporary on disk
    rerun = _train(out)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    _same_files(reference, out)
