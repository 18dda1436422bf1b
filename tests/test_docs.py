"""Issue 31: the docs site, served on localhost and driven by a real headless Chromium (Debian's `chromium`, installed
by `make chromium`): the index loads, a notebook page shows its figures, the API page lists the main entry points,
search finds "calibrate", and no page asks for anything off this machine. `make test` builds the site first."""
import functools, http.server, re, shutil, subprocess, sys, threading
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
SITE = ROOT/'docs/site'
CHROMIUM = shutil.which('chromium') or shutil.which('chromium-browser')
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (make chromium, as root)")


@pytest.fixture(scope='module')
def site_url():
    if not (SITE/'index.html').exists():
        subprocess.run([sys.executable, str(ROOT/'scripts/build_docs.py')], check=True, cwd=ROOT)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(SITE))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def chromium(tmp_path, *args) -> str:
    "Chromium headless with an empty profile; stdout (the DOM, after scripts ran, for --dump-dom)."
    cmd = [CHROMIUM, '--headless', '--no-sandbox', '--disable-gpu', f'--user-data-dir={tmp_path/"profile"}',
           '--virtual-time-budget=15000', *args]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout


def test_index_loads_and_links_every_notebook(site_url, tmp_path):
    dom = chromium(tmp_path, '--dump-dom', f'{site_url}/index.html')
    assert '<title>' in dom and 'tc2_nb' in dom
    for nb in sorted(p.stem for p in (ROOT/'nbs').glob('[0-9]*.ipynb')): assert f'href="{nb}.html"' in dom, nb
    shot = tmp_path/'index.png'
    chromium(tmp_path, f'--screenshot={shot}', '--window-size=1280,900', f'{site_url}/index.html')
    assert shot.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n' and shot.stat().st_size > 20_000   # a page, not a blank


def test_a_notebook_page_shows_its_figures(site_url, tmp_path):
    dom = chromium(tmp_path, '--dump-dom', f'{site_url}/10_theorem1.html')
    images = re.findall(r'<img[^>]+src="([^"]+\.png)"', dom)
    assert images, 'no figure on the page'
    for src in images: assert (SITE/src).exists() and (SITE/src).stat().st_size > 5_000, src


def test_api_page_lists_the_entry_points(site_url, tmp_path):
    dom = chromium(tmp_path, '--dump-dom', f'{site_url}/api.html')
    for name in ('tc2_nb.trainer.pretrain', 'tc2_nb.calibration.Calibrator', 'tc2_nb.experiment.run_experiment'):
        assert f'id="{name}"' in dom, name


def test_search_finds_calibrate(site_url, tmp_path):
    dom = chromium(tmp_path, '--dump-dom', f'{site_url}/search.html?q=calibrate')
    hits = re.findall(r'<li[^>]*>\s*<a href="([^"]+)\.html', dom)
    assert '07_calibration' in [h.split('/')[-1] for h in hits], hits[:10]


def test_nothing_is_fetched_from_off_the_machine():
    "No script, style sheet, font, image or frame from another host, in any page or style sheet of the site."
    tag = re.compile(r"""<(?:script|link|img|iframe|source)\b[^>]*?\b(?:src|href)=["'](?:https?:)?//""", re.I)
    css = re.compile(r"""(?:@import|url\()\s*["']?(?:https?:)?//""", re.I)
    bad = [(str(p.relative_to(SITE)), m.group(0)) for p in SITE.rglob('*') if p.suffix in ('.html', '.css')
           for m in (tag if p.suffix == '.html' else css).finditer(p.read_text(errors='ignore'))]
    assert not bad, bad[:10]
