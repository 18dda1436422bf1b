"""Write results/verdict/selection.csv: the verdict study's knob selection (issue 14) from the finished runs under
results/verdict/runs/selection, then the calibrator's start × width (issue 30, runs/selection_calib), each scored and
chosen by the one-standard-error rule. The study's helpers live in its notebook (19_verdict_study), not in the library,
so this runs the notebook with papermill (`write_selection=True`); run it after each selection run lands.
Usage: python scripts/verdict_selection.py [--out EXECUTED_NOTEBOOK]"""
import argparse, subprocess, sys, tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--out', help='keep the executed notebook here (default: a temporary file)')
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        out = a.out or str(Path(d)/'19_verdict_study.ipynb')
        cmd = [sys.executable, '-m', 'papermill', str(ROOT/'nbs/19_verdict_study.ipynb'), out, '-p', 'write_selection', 'True',
               '-k', 'python3', '--cwd', str(ROOT/'nbs'), '--no-progress-bar']
        sys.exit(subprocess.run(cmd).returncode)

if __name__ == '__main__': main()
