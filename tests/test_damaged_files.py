"""A damaged run file is never served as a result (issue 33): the run repairs what it can recompute (the evaluation from
the final weights, summary.json, experiment.json) or stops with one line that names the file and says what to do."""
import json, os, shutil
from pathlib import Path
import pytest
import torch
from tc2_nb.core import ConfigError, DamagedFileError
from tc2_nb.experiment import run_experiment, read_results

torch.set_num_threads(1)
TINY = dict(method='simclr', variant='TC2', dataset='fashion_mnist', limit_train=64, batch_size=16, epochs=2,
            backbone='small_cnn', backbone_kwargs=dict(widths=[8, 16, 16]), n_factors=4, ckpt_every=1, log_every=1,
            probe_every=0, progress=False, device='cpu', evals=['in_domain'], eval_limit_train=200, eval_limit_test=100)


@pytest.fixture(scope='module')
def finished(tmp_path_factory):
    out = tmp_path_factory.mktemp('damaged')/'whole'
    run_experiment(TINY, out_dir=str(out))
    return out


def _copy(finished, tmp_path) -> Path:
    d = tmp_path/'run'; shutil.copytree(finished, d); return d

def _half(p:Path): s = p.read_text(); p.write_text(s[:len(s) // 2])

DAMAGE = {'emptied': lambda p: p.write_text(''), 'torn mid-row': lambda p: p.write_text(p.read_text()[:-12]),
          'cut to its header': lambda p: p.write_text(p.read_text().splitlines()[0] + '\n'),
          'random bytes': lambda p: p.write_bytes(bytes(range(128, 256)))}


@pytest.mark.parametrize('how', list(DAMAGE))
def test_damaged_results_are_recomputed_from_the_final_weights(finished, tmp_path, how):
    d = _copy(finished, tmp_path)
    DAMAGE[how](d/'results.csv')
    with pytest.raises(DamagedFileError, match="results.csv' is damaged"): read_results(d/'results.csv')
    with pytest.warns(UserWarning, match='evaluated again from its final weights'):
        df = run_experiment(TINY, out_dir=str(d))
    assert (d/'results.csv').read_text() == (finished/'results.csv').read_text()       # the same numbers, recomputed
    assert list(df.value) == list(read_results(finished/'results.csv').value)


def test_truncated_summary_is_rewritten(finished, tmp_path):
    d = _copy(finished, tmp_path)
    _half(d/'summary.json')
    with pytest.warns(UserWarning, match="summary.json' is damaged"):
        run_experiment(TINY, out_dir=str(d))
    s, ref = (json.loads((x/'summary.json').read_text()) for x in (d, finished))
    assert s['finished'] and s['steps'] == ref['steps'] == 8 and s['final_loss'] == ref['final_loss']
    assert (d/'results.csv').read_text() == (finished/'results.csv').read_text()


def test_damaged_experiment_json_with_other_settings_is_refused(finished, tmp_path):
    d = _copy(finished, tmp_path)
    _half(d/'experiment.json')
    with pytest.raises(ConfigError, match=r"other settings \(lr: None there, 0.2 now\)"):
        run_experiment(dict(TINY, lr=0.2), out_dir=str(d))
    with pytest.warns(UserWarning, match='training settings match config.json'):     # the same settings: evaluated again
        run_experiment(TINY, out_dir=str(d))
    assert json.loads((d/'experiment.json').read_text())['evals'] == TINY.get('evals', ['in_domain'])   # whole again


def test_damaged_log_of_an_unfinished_run_names_the_file(tmp_path):
    d = tmp_path/'part'
    run_experiment(dict(TINY, max_steps=3, evals=[]), out_dir=str(d))
    (d/'train_log.csv').write_bytes(os.urandom(200) + b'\xff\xfe')
    with pytest.raises(DamagedFileError, match=r"train_log.csv' is damaged .*pass fresh=True"):
        run_experiment(TINY, out_dir=str(d))


def test_stale_temporaries_are_removed(finished, tmp_path):
    d = _copy(finished, tmp_path)
    (d/'.results.csv.x1y2.tmp').write_text('torn')
    run_experiment(TINY, out_dir=str(d))
    assert not list(d.glob('.*.tmp'))


def test_report_leaves_out_a_torn_point_and_says_so(finished, tmp_path, capsys):
    from tc2_nb.sweep import collect
    from tc2_nb.launch import sweep_main
    root = tmp_path/'sweep'
    for seed in (0, 1): shutil.copytree(finished, root/f'variant=TC2__seed={seed}')
    DAMAGE['torn mid-row'](root/'variant=TC2__seed=1'/'results.csv')
    with pytest.warns(UserWarning, match=r"seed=1/results.csv' is damaged: it ends mid-row.*left out of the report"):
        df = collect(root)
    assert set(df.run) == {'variant=TC2__seed=0'} and df.value.notna().all() and set(df.metric) == {'knn_top1', 'linear_top1'}
    empty = tmp_path/'nothing'; empty.mkdir()
    sw = tmp_path/'s.yaml'; sw.write_text(f"out_root: {empty}\nnotebook: none\nbase: {{}}\ngrid: {{seed: [0]}}\n")
    assert sweep_main(['report', str(sw)]) == 2
    assert capsys.readouterr().err == f"tc2-sweep: no finished run under {str(empty)!r} to report yet (a failed run leaves failed.json)\n"


def test_a_nan_metric_is_a_value_not_damage(finished, tmp_path):
    "A metric that is NaN (`nan` in the file) beside numbers is a result; a cell that is no number is damage."
    p = tmp_path/'results.csv'
    lines = (finished/'results.csv').read_text().splitlines()
    p.write_text('\n'.join([lines[0], lines[1].rsplit(',', 2)[0] + ',nan,' + lines[1].rsplit(',', 1)[1], *lines[2:]]) + '\n')
    df = read_results(p)
    assert df.value.astype(str).str.lower().eq('nan').sum() == 1 and len(df) == len(lines) - 1
    p.write_text(p.read_text().replace(',nan,', ',4l.2,'))
    with pytest.raises(DamagedFileError, match='a value is not a number'): read_results(p)


def test_a_folder_in_the_older_layout_is_still_finished(finished, tmp_path):
    "Before issue 31 experiment.json repeated the training settings (and out_dir); such a folder is still done, and checked."
    from tc2_nb.experiment import split_params
    d = _copy(finished, tmp_path)
    cfg, exp = split_params(dict(TINY, out_dir=str(d)))
    (d/'experiment.json').write_text(json.dumps(dict(cfg.to_dict(), **exp)))
    (d/'params.json').write_text(json.dumps(dict(TINY, out_dir=str(d))))
    before = (d/'results.csv').read_text()
    assert run_experiment(TINY, out_dir=str(d)).equals(read_results(d/'results.csv'))     # served, not retrained
    assert (d/'results.csv').read_text() == before
    with pytest.raises(ConfigError, match=r"other settings \(lr: None there, 0.2 now\)"):
        run_experiment(dict(TINY, lr=0.2), out_dir=str(d))
