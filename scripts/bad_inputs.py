"""Try each bad input of issue 8 and print what it gets (the error is raised before any data load or compute).
Run: .venv/bin/python scripts/bad_inputs.py"""
import tempfile, traceback
from pathlib import Path
from tc2_nb.core import ConfigError
from tc2_nb.experiment import split_params, validate_experiment
from tc2_nb.train_config import TrainConfig

tmp = Path(tempfile.mkdtemp())
(tmp/'typo.yaml').write_text('method: simclr\nepoch: 10\n')
CASES = {
    'unknown method': dict(method='simclrr'),
    'unknown variant': dict(variant='TC3'),
    'unknown dataset': dict(dataset='cifar11'),
    'unknown backbone': dict(backbone='resnet19'),
    'batch not divisible by K': dict(batch_size=250, n_tasks=4),
    "m' >= m": dict(n_views=4, n_support=4),
    "m' < 1": dict(n_support=0),
    'n_f > d': dict(n_factors=1000),
    'negative lr': dict(lr=-0.1),
    'negative epochs': dict(epochs=-1),
    'missing dataset root': dict(dataset='cifar10', dataset_kwargs={'root': '/no/such/cifar10'}),
    'image size the backbone cannot take': dict(method='mae', backbone='vit_tiny', image_size=30),
    'unknown evaluation': dict(evals=['knn']),
    'missing evaluation data (PACS without root)': dict(evals=['pacs']),
}

def attempt(params):
    cfg, exp = split_params(params)
    validate_experiment(cfg, exp)

rows = []
for name, params in CASES.items():
    try: attempt(params); rows.append((name, 'NO ERROR'))
    except ConfigError as e: rows.append((name, f'ConfigError: {e}'))
    except Exception as e: rows.append((name, f'{type(e).__name__}: {e}'))
try: TrainConfig.from_yaml(tmp/'typo.yaml'); rows.append(('YAML with unknown keys', 'NO ERROR'))
except ConfigError as e: rows.append(('YAML with unknown keys', f'ConfigError: {e}'))
for name, msg in rows: print(f"- {name}: {msg[:300]}")
