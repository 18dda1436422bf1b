"""Tidy the committed results tree in place (issue 31, §6), changing no number.

- Every run folder records its configuration once: `config.json` (training settings, without `out_dir`),
  `experiment.json` (evaluation settings only); the sweep's `params.json` goes, after a check that each of its values
  is the one the run recorded.
- A monitor split is stored once, under `results/splits/` by its seed and content hash, and each run folder keeps a
  reference to it (`tc2_nb.monitor.store_monitor_split`).
- No machine's absolute path: a run's `out_dir` is dropped; messages that name a checkout's or a temporary folder's
  path are made relative (`<tmp>` for a temporary folder).
- Before and after, the SHA-256 of every CSV under `results/` is taken: the script fails if one changed.

Idempotent: run it again after syncing new runs (`scripts/sync_study.sh` does).

    python scripts/tidy_results.py [--root results]
"""
from __future__ import annotations
import argparse, hashlib, json, re
from pathlib import Path
from tc2_nb.core import atomic_write, atomic_write_json
from tc2_nb.experiment import EXPERIMENT_DEFAULTS
from tc2_nb.monitor import store_monitor_split

# a checkout's folder (/work/main/, /work/study/, /home/x/tc2_nb/) or a temporary one, as messages name them
ABSOLUTE = re.compile(r"(?<![\w.~<])/(?:work|home|root|tmp|Users|scratch|mnt|data)/[^\s'\",)]*")


def csv_digests(root:Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob('*.csv'))}


def one_config(run:Path) -> list[str]:
    "config.json without out_dir; experiment.json with the evaluation settings alone; params.json checked, then removed."
    done, cfg_path, exp_path, par_path = [], run/'config.json', run/'experiment.json', run/'params.json'
    cfg = json.loads(cfg_path.read_text()) if cfg_path.exists() else {}
    exp = json.loads(exp_path.read_text()) if exp_path.exists() else {}
    recorded = {**cfg, **exp}
    for k in set(cfg) & set(exp) - {'out_dir'}:
        if cfg[k] != exp[k]: raise SystemExit(f"{run}: {k} is {cfg[k]!r} in config.json, {exp[k]!r} in experiment.json")
    if par_path.exists():
        params = json.loads(par_path.read_text())
        for k, v in params.items():
            if k != 'out_dir' and recorded.get(k, v) != v:
                raise SystemExit(f"{run}: params.json says {k}={v!r}, the run recorded {recorded.get(k)!r}")
        missing = sorted(k for k in params if k != 'out_dir' and k not in recorded)
        if missing: raise SystemExit(f"{run}: params.json holds {missing}, which the run did not record")
        par_path.unlink(); done.append('params.json removed')
    if 'out_dir' in cfg:
        atomic_write_json({k: v for k, v in cfg.items() if k != 'out_dir'}, cfg_path); done.append('config.json: out_dir dropped')
    if exp and set(exp) - set(EXPERIMENT_DEFAULTS):
        atomic_write_json({k: v for k, v in exp.items() if k in EXPERIMENT_DEFAULTS}, exp_path); done.append('experiment.json: evaluation only')
    return done


def relative_text(path:Path) -> bool:
    "Rewrite the absolute paths in a text file's messages; True when it changed."
    text = path.read_text()
    new = ABSOLUTE.sub(lambda m: _relative(m.group(0)), text)
    if new == text: return False
    atomic_write(path, new)
    return True


def _relative(p:str) -> str:
    if p.startswith('/tmp/'): return '<tmp>' + p[len('/tmp/'):].partition('/')[1] + p[len('/tmp/'):].partition('/')[2]
    for home in ('/root/', '/home/'):
        if p.startswith(home) and '/.cache/' in p: return '~/.cache/' + p.split('/.cache/', 1)[1]
    m = re.match(r'/work/(?:main/|study/)?(.*)', p)             # a checkout on the machines that ran the study
    return m.group(1) if m else p


def main():
    ap = argparse.ArgumentParser(); ap.add_argument('--root', default='results'); a = ap.parse_args()
    root = Path(a.root)
    before = csv_digests(root)
    runs = sorted({p.parent for n in ('config.json', 'experiment.json', 'params.json', 'monitor_split.json') for p in root.rglob(n)})
    counts = dict(runs=len(runs), changed=0, splits=0, texts=0)
    for run in runs:
        done = one_config(run)
        if (run/'monitor_split.json').exists():
            raw = (run/'monitor_split.json').read_bytes()
            if b'"stored_at"' not in raw[:200]:
                store_monitor_split(run, root/'splits'); done.append('split stored once'); counts['splits'] += 1
        counts['changed'] += bool(done)
    for p in sorted(root.rglob('*')):
        if p.is_file() and p.suffix in ('.json', '.csv', '.md', '.txt') and relative_text(p): counts['texts'] += 1
    after = csv_digests(root)
    changed = [k for k in before if before[k] != after.get(k)]
    numbers = [k for k in changed if k.endswith('results.csv')]
    if numbers: raise SystemExit(f"results.csv changed: {numbers}")
    print(f"{counts['runs']} run folders, {counts['changed']} rewritten, {counts['splits']} splits moved to "
          f"{root/'splits'} ({len(list((root/'splits').glob('*.json')))} stored); {counts['texts']} text files made relative; "
          f"{len(before)} CSVs, every results.csv unchanged (SHA-256); other CSVs changed (paths only): {changed}")


if __name__ == '__main__': main()
