"""Try every bad input of issues 8 and 33 and write what each gets: for every TrainConfig and evaluation key a wrong type
and (where it has one) a wrong range or value, YAML that is not YAML, and every damaged run file. A case holds when it
is refused before any compute with one line that names the key (or the file); the table, with each message's first
line, goes to results/bad_inputs.csv and .md.
Run: .venv/bin/python scripts/bad_inputs.py [--out results/bad_inputs]"""
import argparse, dataclasses, io, json, os, shutil, subprocess, sys, tempfile, time, warnings
from pathlib import Path
import pandas as pd
from tc2_nb.core import ConfigError, atomic_write
from tc2_nb.experiment import split_params, validate_experiment, run_experiment
from tc2_nb.train_config import TrainConfig

warnings.filterwarnings('ignore')
WRONG_TYPE = {int: 'ten', float: 'fast', bool: 'maybe', str: 7, dict: 'x=1', list: 'mnist'}
# a wrong range or value for the keys that have one
WRONG_VALUE = dict(method='simclrr', backbone='resnet19', dataset='cifar11', variant='TC3', image_size=3, limit_train=0,
                   n_tasks=0, n_views=1, n_support=0, n_factors=0, factor_hidden=0, factor_kind='per_pixel', lambda_s=-1.0,
                   lambda_1=-0.1, restore_norm='sometimes', alphas=[0.1], beta1=-0.05, stage1='parallel', query_loss='mse',
                   outer_reduce='median', task_batching='threads', epochs=0, batch_size=250, optimizer='adagrad', lr=-0.1,
                   lr_scaling='cubic', weight_decay=-1.0, momentum=1.5, warmup_epochs=-1.0, lars_eta=0.0, probe_every=-1,
                   monitor_every=-1, monitor_val=0, monitor_bank=0, monitor_transfer=['cifar11'], log_every=0,
                   ckpt_every=-1, seed=-1, device='tpu', task_shards=0, num_workers=-1, max_steps=-1,
                   method_kwargs={'temprature': 0.2}, backbone_kwargs={'depth': 'x'}, dataset_kwargs={'root': '/no/such/data'},
                   evals=['knn'], transfer_to=['cifar11'], eval_limit_train=0, eval_limit_test=-5,
                   eval_options={'in_domain': {'bogus': 1}})
EXTRA = {'n_factors > d': dict(n_factors=1000), "m' >= m": dict(n_views=4, n_support=4),
         'image size the backbone cannot take': dict(image_size=30, method='mae', backbone='vit_tiny'),
         'eval_options k < 1': dict(eval_options={'in_domain': {'k': -5}}), 'unknown key (typo)': dict(epoch=10),
         'PACS without its root': dict(evals=['pacs'])}
NAMED = {'PACS without its root': 'pacs', "m' >= m": 'n_support'}     # what the message must name, where not the first key

def field_kind(f):
    t = str(f.type)
    for name, kind in (('bool', bool), ('int', int), ('float', float), ('dict', dict), ('list', list), ('str', str)):
        if name in t: return kind
    return None

def attempt(params:dict) -> tuple[str, str]:
    "('refused', first line) when validation refuses `params` with a ConfigError, else what happened."
    try: validate_experiment(*split_params(params)); return 'accepted', ''
    except ConfigError as e: return 'refused', str(e).splitlines()[0]
    except Exception as e: return 'raw error', f'{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ""}'

def input_cases():
    eval_keys = dict(evals=list, transfer_to=list, eval_limit_train=int, eval_limit_test=int, eval_options=dict)
    kinds = {f.name: field_kind(f) for f in dataclasses.fields(TrainConfig)} | eval_keys
    skip = {'out_dir', 'resume', 'fresh', 'progress', 'tensorboard', 'alphas'}     # run control: any value is a choice
    for key, kind in kinds.items():
        if key in skip or kind is None: continue
        yield f'{key}: wrong type', key, {key: WRONG_TYPE[kind]}
        if key in WRONG_VALUE: yield f'{key}: wrong value', key, {key: WRONG_VALUE[key]}
    for name, params in EXTRA.items(): yield name, NAMED.get(name, next(iter(params))), params

def yaml_cases(tmp:Path):
    cases = {'YAML syntax error': 'method: [simclr\n', 'tab in YAML': 'method: simclr\n\tepochs: 2\n',
             'python tag in YAML': 'lr: !!python/object/apply:os.system ["true"]\n', 'YAML not a mapping': '- a\n- b\n'}
    for name, text in cases.items():
        p = tmp/f"{name.replace(' ', '_')}.yaml"; p.write_text(text)
        r = subprocess.run([sys.executable, '-m', 'tc2_nb.cli', str(p), '--check'], capture_output=True, text=True)
        lines = r.stderr.strip().splitlines()
        status = 'refused' if r.returncode == 2 and len(lines) == 1 else f'exit {r.returncode}, {len(lines)} lines'
        yield name, p.name, status, lines[-1] if lines else ''

TINY = dict(method='simclr', variant='TC2', dataset='fashion_mnist', limit_train=64, batch_size=16, epochs=2,
            backbone='small_cnn', backbone_kwargs=dict(widths=[8, 16, 16]), n_factors=4, ckpt_every=1, log_every=1,
            probe_every=0, progress=False, device='cpu', evals=['in_domain'], eval_limit_train=200, eval_limit_test=100)

def damaged_cases(tmp:Path):
    "Each damaged file of a finished tiny run: repaired (the same results) or refused in one line naming the file."
    ref = tmp/'ref'; good = run_experiment(TINY, out_dir=str(ref))
    half = lambda p: p.write_text(p.read_text()[:len(p.read_text()) // 2])
    damage = {'results.csv emptied': ('results.csv', lambda p: p.write_text('')),
              'results.csv torn mid-row': ('results.csv', lambda p: p.write_text(p.read_text()[:-12])),
              'results.csv cut to its header': ('results.csv', lambda p: p.write_text(p.read_text().splitlines()[0] + '\n')),
              'summary.json truncated': ('summary.json', half), 'experiment.json truncated': ('experiment.json', half),
              'experiment.json and config.json truncated': ('config.json', half),
              'train_log.csv random bytes (unfinished run)': ('train_log.csv', lambda p: p.write_bytes(os.urandom(300))),
              'checkpoint.pt truncated (unfinished run)': ('checkpoint.pt', lambda p: p.write_bytes(p.read_bytes()[:999])),
              '.lock is a symlink': ('.lock', lambda p: (p.unlink(), p.symlink_to(tmp/'victim'))),
              'train_log.csv is a symlink': ('train_log.csv', lambda p: (p.unlink(), p.symlink_to(tmp/'victim')))}
    for name, (f, fn) in damage.items():
        d = tmp/'case'; shutil.rmtree(d, ignore_errors=True)
        if 'unfinished' in name: run_experiment(dict(TINY, max_steps=3, evals=[]), out_dir=str(d))
        else: shutil.copytree(ref, d)
        if name.startswith('experiment.json and'): half(d/'experiment.json')
        (tmp/'victim').write_text('keep')
        fn(d/f)
        try:
            df = run_experiment(TINY, out_dir=str(d))
            same = df.value.tolist() == good.value.tolist()
            yield name, f, 'repaired' if same else 'WRONG RESULTS', 'results recomputed equal' if same else str(df.value.tolist())
        except ConfigError as e: yield name, f, 'refused', str(e).splitlines()[0]
        except Exception as e: yield name, f, 'raw error', f'{type(e).__name__}: {e}'.splitlines()[0]

def main():
    ap = argparse.ArgumentParser(); ap.add_argument('--out', default='results/bad_inputs'); a = ap.parse_args()
    rows = []
    for name, key, params in input_cases():
        status, msg = attempt(params)
        rows.append(dict(case=name, kind='input', names=key, status=status, held=status == 'refused' and key in msg, message=msg))
    with tempfile.TemporaryDirectory() as d:
        for name, f, status, msg in yaml_cases(Path(d)):
            rows.append(dict(case=name, kind='yaml', names=f, status=status, held=status == 'refused' and f in msg, message=msg))
        for name, f, status, msg in damaged_cases(Path(d)):
            held = status == 'repaired' or (status == 'refused' and (f in msg or f.lstrip('.') in msg))
            rows.append(dict(case=name, kind='damaged file', names=f, status=status, held=held, message=msg))
        for r in rows: r['message'] = r['message'].replace(d, '<tmp>')       # no machine's path in committed results
    for r in rows: r['message'] = r['message'].replace(str(Path.home()), '~')
    df = pd.DataFrame(rows)
    out = Path(a.out); out.mkdir(parents=True, exist_ok=True)
    atomic_write(out/'bad_inputs.csv', df.to_csv(index=False))
    md = df.assign(message=df.message.str.replace('|', '/', regex=False).str.slice(0, 160))
    table = ['| ' + ' | '.join(md.columns) + ' |', '|' + '---|' * len(md.columns)]
    table += ['| ' + ' | '.join(str(v) for v in r) + ' |' for r in md.itertuples(index=False)]
    atomic_write(out/'bad_inputs.md', f"{len(df)} cases, {int(df.held.sum())} held, {int((~df.held).sum())} not.\n\n" + '\n'.join(table) + '\n')
    print(f"{len(df)} cases, {int(df.held.sum())} held, {int((~df.held).sum())} not")
    print(df[~df.held].to_string(index=False))

if __name__ == '__main__': main()
