"""scripts/gpu_check.py's issue-15 sections run on the CPU in seconds (`--dry`: small CNN, batch 16, a 64-image epoch),
so that the script is ready for a lent GPU: every row of the loop-vs-vmap step table and every epoch is there, no
section errs. And `scripts/bench_step.py --ops`, the op count of record, counts by stage, and `--kernels` counts leaf profiler events."""
import json, os, subprocess, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_check_dry_runs_batched_and_epoch(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS='1')
    r = subprocess.run([sys.executable, str(ROOT/'scripts'/'gpu_check.py'), '--dry', '--only', 'batched', 'epoch', 'sync',
                        '--out', str(tmp_path)], capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads((tmp_path/'gpu_check.json').read_text())
    assert 'error' not in res['batched'] and 'error' not in res['epoch'], (res['batched'].get('error'), res['epoch'].get('error'))
    assert set(res['batched']['ms']) == {'base', 'T', 'T-vmap', 'TC2', 'TC2-vmap', 'TC2-2nd', 'TC2-2nd-vmap'}
    assert all(v > 0 for v in res['batched']['ms'].values())
    assert {'base', 'TC2', 'TC2-vmap'} <= set(res['epoch']) and res['epoch']['TC2-vmap']['steps'] == 4
    assert '| TC2-vmap |' in (tmp_path/'gpu_check.md').read_text()
    assert {'simclr TC2', 'simclr TC2 batched', 'byol TC2 batched'} <= set(res['sync']) and 'error' not in res['sync']


def bench_step(mode:str) -> str:
    "`bench_step.py MODE` on base and batched TC² (small CNN, 16 px, batch 16): its output."
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS='1')
    r = subprocess.run([sys.executable, str(ROOT/'scripts'/'bench_step.py'), mode, '--variants', 'base,TC2-vmap', '--batch', '16',
                        '--size', '16'], capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    return r.stdout


def test_bench_step_counts_ops_by_stage():
    "`bench_step.py --ops`: the ops of a step, and the same ops again by stage (the stages add up to the step's total)."
    main, stages = bench_step('--ops').split('# all ops by stage')
    total = {l.split()[0]: int(l.split()[1]) for l in main.splitlines() if l.startswith(('base ', 'TC2-vmap '))}
    head, *rows = [l.split() for l in stages.strip().splitlines()]
    by = {row[0]: dict(zip(head[1:], map(int, row[1:]))) for row in rows}
    assert head[1:] == ['views', 'support', 'stage1', 'query_at_θ', 'V', 'targets', 'stage2', 'rest']
    assert {v: sum(c.values()) for v, c in by.items()} == total
    assert by['base']['stage1'] == 0 < by['TC2-vmap']['stage1'] and by['base']['views'] == by['TC2-vmap']['views'] > 0


def test_bench_step_counts_leaf_events():
    "`bench_step.py --kernels`: torch.profiler's leaf events of a step (the count a compiled step can be given too)."
    out = bench_step('--kernels')
    rows = {l.split()[0]: l.split()[1:] for l in out.splitlines() if l.startswith(('base ', 'TC2-vmap '))}
    assert rows['base'][1] == '1.00' and int(rows['TC2-vmap'][0]) > int(rows['base'][0]) > 0, out
    assert rows['base'][2] == rows['TC2-vmap'][2] == '0'                 # eager: no fused kernels
