"""No code path in the package unpickles a file (issue 33): every `torch.load` in `tc2_nb/` is weights-only, and the one
opt-out is `core.load_checkpoint`'s named `weights_only` argument, which its callers leave at True unless a user asks."""
import re
from pathlib import Path

PKG = Path(__file__).resolve().parents[1]/'tc2_nb'

def _calls(text:str, name:str) -> list[str]:
    "The argument text of every call to `name` in `text` (balanced parentheses), outside backquoted prose."
    out = []
    for m in re.finditer(r'(?<!`)' + re.escape(name) + r'\(', text):        # `torch.load(path)` in a docstring is prose
        depth, i = 1, m.end()
        while depth: depth += {'(': 1, ')': -1}.get(text[i], 0); i += 1
        out.append(text[m.end():i - 1])
    return out

def test_every_torch_load_is_weights_only():
    seen = 0
    for f in sorted(PKG.glob('*.py')):
        for args in _calls(f.read_text(), 'torch.load'):
            seen += 1
            assert 'weights_only=True' in args or (f.name == 'core.py' and 'weights_only=weights_only' in args), (f.name, args)
    assert seen >= 2      # core.load_checkpoint and distributed.run_workers

def test_no_literal_opt_out_in_code():
    "`weights_only=False` is never passed in the package's code (it may appear inside a message telling a user how)."
    for f in sorted(PKG.glob('*.py')):
        for line in f.read_text().splitlines():
            code = re.sub(r'`[^`]*`|(["\']).*?\1', '', line.split('#')[0])      # strings, backquoted prose and comments out
            assert not re.search(r'weights_only\s*=\s*False', code), (f.name, line)
