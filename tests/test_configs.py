"Every shipped config and sweep file parses, has no unknown key, and passes validation (data roots stubbed: no network)."
from pathlib import Path
import pytest, yaml
from tc2_nb.experiment import split_params, validate_experiment
from tc2_nb.sweep import load_sweep, expand_grid

ROOT = Path(__file__).resolve().parents[1]/'configs'

def _stub_roots(params, root):
    "Point data roots at an existing folder: the files name the user's server paths."
    kw = dict(params.get('dataset_kwargs') or {})
    if 'root' in kw: kw['root'] = str(root)
    return {**params, 'dataset_kwargs': kw}

@pytest.mark.parametrize('path', sorted(ROOT.glob('*.yaml')) + sorted(ROOT.glob('sweeps/**/_*.yaml')), ids=lambda p: p.name)
def test_config_is_valid(path, tmp_path):
    validate_experiment(*split_params(_stub_roots(yaml.safe_load(path.read_text()), tmp_path)), check_data=False)

@pytest.mark.parametrize('path', sorted(p for p in (ROOT/'sweeps').glob('**/*.yaml') if not p.name.startswith('_')), ids=lambda p: p.name)
def test_sweep_is_valid(path, tmp_path):
    s = load_sweep(path)
    for point in expand_grid(s['grid']):
        validate_experiment(*split_params(_stub_roots({**s['base'], **point}, tmp_path)), check_data=False)
