"tc2-sweep through submitit on a real single-node SLURM (scripts/slurm_local.sh, as root), and the local executor anywhere."
import os, subprocess, time, json
from pathlib import Path
import pandas as pd, pytest, torch
from tc2_nb.launch import launch, sweep_status, job_states, run_point, point_runner, ACTIVE_STATES
from tc2_nb.sweep import run_sweep, run_name
from tc2_nb.sinks import read_scalars

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT/'scripts'/'slurm_local.sh'
TINY = dict(method='simclr', variant='base', dataset='fashion_mnist', backbone='small_cnn', limit_train=256, batch_size=32,
            epochs=1, progress=False, evals=[], device='cpu', log_every=1, ckpt_every=2, probe_every=0)

@pytest.fixture(autouse=True)
def same_threads(monkeypatch):
    """Jobs (SLURM's, submitit's local ones) are new processes that take their thread count from OMP_NUM_THREADS; give
    them this process's (other test modules set torch's to 1 at import), so that their floats equal the in-process
    references bit for bit: with 2 threads against 1 they differed by 1e-4 after 8 steps."""
    monkeypatch.setenv('OMP_NUM_THREADS', str(torch.get_num_threads()))

def _free_ports(n:int) -> list[int]:
    import socket
    socks = [socket.socket() for _ in range(n)]
    for s in socks: s.bind(('127.0.0.1', 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks: s.close()
    return ports

@pytest.fixture(scope='module')
def slurm(tmp_path_factory):
    """Start a local SLURM of this test run's own (state folder and ports), so that a second test run on the machine
    neither shares nor stops its daemons; always stop it."""
    import tempfile
    state = tempfile.mkdtemp(prefix='tc2_slurm_')            # short: munge's socket path must stay under 108 bytes
    ctld, slurmd = _free_ports(2)
    env = dict(os.environ, TC2_SLURM_DIR=state, TC2_SLURMCTLD_PORT=str(ctld), TC2_SLURMD_PORT=str(slurmd))
    r = subprocess.run([str(SCRIPT), 'start'], capture_output=True, text=True, env=env)
    if r.returncode != 0:
        print(f"SLURM tests skipped: {r.stderr.strip()}")
        pytest.skip(f"SLURM cannot start here: {r.stderr.strip()}")
    conf = r.stdout.strip().split('=', 1)[1]
    old = os.environ.get('SLURM_CONF'); os.environ['SLURM_CONF'] = conf
    try: yield conf
    finally:
        subprocess.run([str(SCRIPT), 'stop'], capture_output=True, env=env)
        __import__('shutil').rmtree(state, ignore_errors=True)
        if old is None: os.environ.pop('SLURM_CONF', None)
        else: os.environ['SLURM_CONF'] = old

def _wait(out_root, s, timeout=300, nudge=True):
    """Until no point is queued or running and every job has ended: a point is done as soon as its run folder is, and
    its job exits just after. Requeued jobs wait 120 s for their begin time, which `nudge` skips."""
    t0 = time.time()
    while time.time() - t0 < timeout:
        rows = sweep_status(s)
        if all(r['status'] not in ('queued', 'running') and r['job_state'] not in ACTIVE_STATES for r in rows): return rows
        if nudge:
            for r in rows:
                if r['status'] == 'queued': subprocess.run(['scontrol', 'update', f"JobId={r['job_id']}", 'StartTime=now'], capture_output=True)
        time.sleep(1)
    raise TimeoutError(rows)

def _final(d): return torch.load(Path(d)/'final.pt', map_location='cpu', weights_only=True)['method']

def test_slurm_sweep_equals_in_process_and_reports_failures(slurm, tmp_path):
    grid = dict(seed=[0, 1], variant=['base', 'bogus'])     # 'bogus' points fail (after submission, in their job)
    s = dict(out_root=str(tmp_path/'slurm'), notebook='none', base=TINY, grid=grid)
    rows = launch(s, 'slurm', dict(timeout_min=5, cpus_per_task=1))
    assert len(rows) == 4 and len({r['job_id'].split('_')[0] for r in rows}) == 1      # one job array
    print('job ids:', [r['job_id'] for r in rows])
    st = {r['run']: r for r in _wait(tmp_path, s)}
    ok = [run_name(dict(seed=i, variant='base')) for i in (0, 1)]
    bad = [run_name(dict(seed=i, variant='bogus')) for i in (0, 1)]
    assert [st[k]['status'] for k in ok] == ['done', 'done'] and [st[k]['status'] for k in bad] == ['failed', 'failed']
    assert all(st[k]['job_state'] == 'FAILED' for k in bad) and all(st[k]['job_state'] == 'COMPLETED' for k in ok)
    assert "variant='bogus'" in st[bad[0]]['log']                                       # the failure, from its log
    ref = run_sweep(point_runner(s), TINY, dict(seed=[0, 1]), tmp_path/'inproc', progress=False)
    assert list(ref.status) == ['done', 'done']
    for i in (0, 1):
        a, b = _final(tmp_path/'slurm'/ok[i]), _final(tmp_path/'inproc'/f'seed={i}')
        assert all(torch.equal(a[k], b[k]) for k in a)

def test_preempted_and_requeued_points_resume_exactly(slurm, tmp_path):
    base = dict(TINY, epochs=4, limit_train=2048, ckpt_every=4, tensorboard=True)   # long enough to interrupt
    s = dict(out_root=str(tmp_path/'sweep'), notebook='none', base=base, grid=dict(seed=[0, 1]))
    rows = launch(s, 'slurm', dict(timeout_min=5, cpus_per_task=1, signal_delay_s=30))
    ids = [r['job_id'] for r in rows]; print('job ids:', ids)
    dirs = [tmp_path/'sweep'/r['run'] for r in rows]
    interrupt = [['scancel', '--signal=USR2', ids[0]],    # what SLURM sends before a time limit, or on pre-emption
                 ['scontrol', 'requeue', ids[1]]]         # an admin's (or the scheduler's) requeue
    t0, todo = time.time(), {0, 1}
    while todo:                                           # interrupt each job once it has written a checkpoint
        assert time.time() - t0 < 120, ('no checkpoint', job_states(ids))
        for k in sorted(todo):
            if (dirs[k]/'checkpoint.pt').exists():
                r = subprocess.run(interrupt[k], capture_output=True, text=True)
                assert r.returncode == 0, (r.stderr, job_states(ids)); todo.discard(k)
        time.sleep(0.1)
    st = {r['run']: r for r in _wait(tmp_path, s)}
    assert all(r['status'] == 'done' for r in st.values()), st
    js = job_states(ids)
    assert all(js[i]['state'] == 'COMPLETED' for i in ids), js
    log0 = Path(rows[0]['stdout']).read_text()
    print(''.join(l + '\n' for l in log0.splitlines() if 'tc2-launch' in l))
    assert 'requeued' in log0 and 'resuming from checkpoint.pt at step' in log0
    ref = run_sweep(point_runner(s), dict(base, tensorboard=False), dict(seed=[0, 1]), tmp_path/'ref', progress=False)
    for d, i in zip(dirs, (0, 1)):
        a, b = _final(d), _final(tmp_path/'ref'/f'seed={i}')
        assert all(torch.equal(a[k], b[k]) for k in a), d
        log = pd.read_csv(d/'train_log.csv'); assert list(log.step) == list(range(len(log)))
        tb = read_scalars(d)                                 # the curves: every step once, across the restart
        assert [st for st, _ in tb['loss/loss']] == list(log.step)
        assert {'opt/lr', 'speed/img_per_s', 'speed/step_time_s'} <= set(tb)

def test_local_executor_runs_points_and_survives_a_failure(tmp_path):
    s = dict(out_root=str(tmp_path), notebook='none', base=dict(TINY, epochs=1), grid=dict(variant=['base', 'bogus']))
    rows = {r['run']: r for r in launch(s, 'local', dict(timeout_min=5))}
    assert rows['variant=base']['status'] == 'done' and rows['variant=bogus']['status'] == 'failed'
    st = {r['run']: r for r in sweep_status(s)}
    assert st['variant=base']['status'] == 'done' and st['variant=bogus']['status'] == 'failed'
    assert "variant='bogus'" in st['variant=bogus']['log']


class _Payload:
    "A hostile point folder's checkpoint: code that runs when the pickle is loaded."
    def __init__(self, marker): self.marker = marker
    def __reduce__(self): return (os.system, (f"touch {self.marker}",))

def test_debug_executor_never_unpickles_a_point_checkpoint(tmp_path):
    "The launcher reads a point's checkpoint step weights-only; the point's resume then refuses the file by name."
    from tc2_nb.launch import _checkpoint_step
    s = dict(out_root=str(tmp_path/'sweep'), notebook='none', base=dict(TINY), grid=dict(variant=['base']))
    d = tmp_path/'sweep'/'variant=base'; d.mkdir(parents=True)
    torch.save({'step': 3, 'extra': _Payload(tmp_path/'pwned')}, d/'checkpoint.pt')
    assert _checkpoint_step(d) is None
    rows = launch(s, 'debug')
    assert not (tmp_path/'pwned').exists()
    assert rows[0]['status'] == 'failed' and 'pickled Python objects' in str(rows[0].get('error', '')) + open(d/'failed.json').read()
    torch.save({'step': 3}, d/'checkpoint.pt')
    assert _checkpoint_step(d) == 3
