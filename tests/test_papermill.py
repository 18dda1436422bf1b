"The experiment notebook under papermill, as sweeps and users run it: parameters injected, outputs written, errors surfaced."
from pathlib import Path
import json, sys
import pandas as pd, pytest
import papermill as pm
from tc2_nb.sweep import default_kernel

NB = Path(__file__).resolve().parents[1]/'nbs'/'12_run_experiment.ipynb'
TINY = dict(limit_train=128, batch_size=64, epochs=1, eval_limit_train=300, eval_limit_test=200, probe_every=1)

def _run(out, **params):
    return pm.execute_notebook(str(NB), str(out/'executed.ipynb'), parameters=dict(TINY, out_dir=str(out), **params),
                               kernel_name=default_kernel(), language='python', progress_bar=False)

def test_papermill_run_writes_its_outputs(tmp_path):
    _run(tmp_path, method='byol', variant='TC2')
    df = pd.read_csv(tmp_path/'results.csv', keep_default_na=False)
    assert set(df.method) == {'byol'} and set(df.variant) == {'TC2'}
    assert {'knn_top1', 'linear_top1'} <= set(df.metric)
    for f in ('executed.ipynb', 'config.json', 'train_log.csv', 'probe_log.csv', 'checkpoint.pt', 'figures/training.png'):
        assert (tmp_path/f).exists(), f

def test_papermill_surfaces_the_failing_cell(tmp_path):
    with pytest.raises(pm.PapermillExecutionError, match="method='simclrr' is not allowed"):
        _run(tmp_path, method='simclrr')


def _fake_kernel(tmp_path, python):
    d = tmp_path/'kernels'/'tc2_nb'; d.mkdir(parents=True)
    (d/'kernel.json').write_text(json.dumps(dict(argv=[python, '-m', 'ipykernel_launcher', '-f', '{connection_file}'],
                                                 display_name='x', language='python')))


def test_default_kernel_runs_this_interpreter(tmp_path, monkeypatch):
    "A `tc2_nb` kernel registered by another checkout (another python) is not used: papermill gets `python3` (this python)."
    monkeypatch.setenv('JUPYTER_PATH', str(tmp_path))               # searched before the user's kernels
    _fake_kernel(tmp_path, '/elsewhere/.venv/bin/python')
    assert default_kernel() == 'python3'
    (tmp_path/'kernels'/'tc2_nb'/'kernel.json').unlink(); (tmp_path/'kernels'/'tc2_nb').rmdir()
    _fake_kernel(tmp_path, sys.executable)
    assert default_kernel() == 'tc2_nb'
