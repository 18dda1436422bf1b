"""The committed results tree belongs in a repository (issue 31, §6): no machine's absolute path, each monitor split
stored once and referenced by hash, each run folder's configuration recorded once."""
import hashlib, json, re, subprocess
from pathlib import Path
import pytest
from tc2_nb.experiment import EXPERIMENT_DEFAULTS
from tc2_nb.monitor import read_monitor_split

ROOT = Path(__file__).resolve().parents[1]
# a path that starts at a machine's root folder, in a message or a saved setting
ABSOLUTE = re.compile(r"(?<![\w.~<])/(?:work|home|root|tmp|Users|scratch|mnt|data|opt|var|srv)/[\w.-]")


def tracked(sub='results') -> list[Path]:
    out = subprocess.run(['git', 'ls-files', '-z', sub], cwd=ROOT, capture_output=True, check=True).stdout.decode()
    return [ROOT/p for p in out.split('\0') if p and (ROOT/p).is_file()]   # as the checkout has them now


@pytest.fixture(scope='module')
def files():
    fs = tracked()
    if not fs: pytest.skip('not a git checkout with committed results')
    return fs


def test_no_absolute_machine_path(files):
    bad = []
    for f in files:
        if f.suffix not in ('.json', '.csv', '.md', '.txt', '.yaml'): continue
        bad += [f"{f.relative_to(ROOT)}: {m.group(0)}" for m in ABSOLUTE.finditer(f.read_text(errors='replace'))]
    assert not bad, f"{len(bad)} absolute paths in committed results, e.g. {bad[:3]}; run scripts/tidy_results.py"


def test_the_pattern_catches_what_it_must():
    assert ABSOLUTE.search('"out_dir": "/work/study/results/verdict/runs/main/x"')
    assert ABSOLUTE.search("checkpoint '/tmp/tmp7lis0mdn/case/checkpoint.pt'")
    assert not ABSOLUTE.search('results/verdict/runs/main/x and ~/.cache/tc2_nb/pacs and <tmp>/case and https://a.b/data/c')


def test_each_split_stored_once_and_referenced(files):
    splits = [f for f in files if f.name == 'monitor_split.json']
    stored = [f for f in files if f.parent.name == 'splits' and f.name.startswith('monitor_split-')]
    assert splits and stored
    digests = [hashlib.sha256(f.read_bytes()).hexdigest() for f in stored]
    assert len(set(digests)) == len(digests)                                  # no content stored twice
    for f, d in zip(stored, digests): assert d[:12] in f.name                 # named by its hash
    used = set()
    for f in splits:
        ref = json.loads(f.read_text())
        assert set(ref) == {'stored_at', 'sha256'}, f"{f.relative_to(ROOT)} holds a split, not a reference"
        used.add((f.parent/ref['stored_at']).resolve())
        assert read_monitor_split(f.parent)['dataset'] == 'fashion_mnist'   # resolves, and its hash matches
    assert used == {f.resolve() for f in stored}                              # and none stored for nothing


def test_each_run_records_its_configuration_once(files):
    runs = sorted({f.parent for f in files if f.name in ('config.json', 'experiment.json', 'params.json')})
    assert runs
    for d in runs:
        assert not (d/'params.json').exists(), d
        exp = json.loads((d/'experiment.json').read_text()) if (d/'experiment.json').exists() else {}
        assert set(exp) <= set(EXPERIMENT_DEFAULTS), f"{d}: experiment.json repeats {sorted(set(exp) - set(EXPERIMENT_DEFAULTS))}"
        assert 'out_dir' not in json.loads((d/'config.json').read_text()), d
