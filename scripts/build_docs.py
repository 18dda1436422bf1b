"""Issue 31: the docs site, built offline. Each notebook of nbs/ becomes a page (its prose, code and, where executed,
its outputs), beside an API reference of tc2_nb, navigation and search (Sphinx with myst-nb, the alabaster theme:
both install from PyPI and fetch nothing at build or view time). nbdev's directives are turned into what a renderer
uses: `#| hide` cells run but are not shown, and directive lines are removed. The notebooks whose outputs are the
point (figures and tables of studies: EXECUTED, under a minute in all) run in the build; the rest, whose cells are
tests that `make test` runs anyway (nbdev-test), are shown as source, so CI does not execute them twice. Warnings
fail the build.
Usage: python scripts/build_docs.py [--out docs/site]"""
import argparse, json, re, shutil, subprocess, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT/'_docs_src'                       # beside nbs/: the notebooks' relative paths (../results) still hold
EXECUTED = ('01_data', '07_calibration', '10_theorem1', '17_cpu_study', '19_verdict_study')   # their figures are the point
MODULES = ['core', 'data', 'views', 'tasks', 'backbones', 'losses', 'methods', 'calibration', 'train_config', 'optim',
           'task_batching', 'stage1', 'bilevel', 'trainer', 'monitor', 'sinks', 'evaluate', 'theorem1', 'experiment', 'distributed', 'sweep',
           'launch', 'export', 'cli', 'demo']
DIRECTIVE = re.compile(r'^\s*#\s*\|')

CONF = r'''
project, author = 'tc2_nb', 'tc2_nb developers'
extensions = ['myst_nb', 'sphinx.ext.autodoc']
exclude_patterns = ['_build']
nb_execution_mode = {mode!r}
nb_execution_excludepatterns = {excluded!r}
nb_execution_timeout = 600
nb_execution_raise_on_error = True
nb_execution_show_tb = True
nb_ipywidgets_js = {{}}                     # no require.js from a CDN
nb_merge_streams = True
html_theme = 'alabaster'
html_theme_options = dict(font_family='sans-serif', head_font_family='sans-serif', code_font_family='monospace',
                          sidebar_collapse=True)
html_sidebars = {{'**': ['about.html', 'searchfield.html', 'navigation.html']}}
html_show_sourcelink = False
autodoc_default_options = dict(members=True, undoc_members=False)
autodoc_typehints = 'none'
autodoc_docstring_signature = False
suppress_warnings = ['mystnb.unknown_mime_type', 'myst.header']
html_static_path = ['_static']

import re
def _markdown_docstring(app, what, name, obj, options, lines):
    "The notebooks' docstrings are Markdown: `code` becomes a literal, and *, | and _ outside literals are escaped."
    def literal(p, before, after):           # RST wants space around inline markup: an escaped space is invisible
        return ('\\ ' if before and not before[-1].isspace() else '') + '``' + p[1:-1] + '``' + ('\\ ' if after and not after[0].isspace() else '')
    for i, line in enumerate(lines):
        parts = re.split(r'(`[^`]+`)', line)
        lines[i] = ''.join(literal(p, parts[j - 1] if j else '', parts[j + 1] if j + 1 < len(parts) else '')
                           if p.startswith('`') and p.endswith('`') and len(p) > 1 else re.sub(r'([*|_\\])', r'\\\1', p)
                           for j, p in enumerate(parts))
def setup(app): app.connect('autodoc-process-docstring', _markdown_docstring)
mathjax_path = 'no-mathjax.js'          # no CDN: a page with math shows its TeX source
'''

def process(nb_path:Path, out:Path):
    "A notebook without its `#| hide` cells and nbdev's directive lines, and without outputs."
    nb = json.loads(nb_path.read_text())
    cells = []
    for c in nb['cells']:
        src = ''.join(c['source'])
        if c['cell_type'] == 'code':
            if re.search(r'^\s*#\s*\|\s*default_exp\b', src, re.M): continue
            hide = re.search(r'^\s*#\s*\|\s*hide\b', src, re.M)
            src = '\n'.join(l for l in src.splitlines() if not DIRECTIVE.match(l)).strip('\n')
            if not src: continue
            meta = dict(c.get('metadata', {}), **({'tags': ['remove-cell']} if hide else {}))   # runs, not shown
            c = dict(c, source=src, outputs=[], execution_count=None, metadata=meta)
        cells.append(c)
    nb['cells'] = cells
    nb.setdefault('metadata', {})['kernelspec'] = dict(name='python3', display_name='Python 3', language='python')
    out.write_text(json.dumps(nb, indent=1))

def index(pages:list[str]) -> str:
    readme = (ROOT/'README.md').read_text().split('\n## ')[0]
    toc = '\n'.join(pages)
    return f"{readme}\n\n```{{toctree}}\n:maxdepth: 1\n:caption: Notebooks\n\n{toc}\n```\n\n```{{toctree}}\n:maxdepth: 2\n:caption: Reference\n\napi\n```\n"

def api() -> str:
    parts = ['# API reference\n', 'Every public name of `tc2_nb`, module by module (docstrings from the notebooks).\n']
    for m in MODULES:
        parts.append(f"## `tc2_nb.{m}`\n\n```{{eval-rst}}\n.. automodule:: tc2_nb.{m}\n   :members:\n```\n")
    return '\n'.join(parts)

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--out', default=str(ROOT/'docs/site'))
    ap.add_argument('--no-execute', action='store_true', help='render every notebook as source (a quick look at the layout)')
    a = ap.parse_args()
    shutil.rmtree(SRC, ignore_errors=True); SRC.mkdir()
    nbs = sorted((ROOT/'nbs').glob('[0-9]*.ipynb'))
    for nb in nbs: process(nb, SRC/nb.name)
    for helper in (ROOT/'nbs').glob('*.py'): shutil.copy(helper, SRC/helper.name)   # the notebooks' test fixtures
    (SRC/'_static').mkdir(); (SRC/'_static/no-mathjax.js').write_text('// math is shown as TeX source: no MathJax from a CDN\n')
    (SRC/'conf.py').write_text(CONF.format(excluded=[nb.name for nb in nbs if nb.stem not in EXECUTED],
                                           mode='off' if a.no_execute else 'force'))
    (SRC/'index.md').write_text(index([nb.stem for nb in nbs]))
    (SRC/'api.md').write_text(api())
    r = subprocess.run([sys.executable, '-m', 'sphinx', '-W', '--keep-going', '-q', '-b', 'html', '-d', str(SRC/'_build/doctrees'),
                        str(SRC), a.out], cwd=ROOT)
    sys.exit(r.returncode)

if __name__ == '__main__': main()
