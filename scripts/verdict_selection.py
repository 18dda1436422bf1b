"""Write results/verdict/selection.csv: the verdict study's knob selection (issue 14) from the finished runs under
results/verdict/runs/selection, then the calibrator's start × width (issue 30, runs/selection_calib), each scored and
chosen by tc2_nb.verdict's one-standard-error rule. Rerun after each selection run lands; 19_verdict_study checks that
the committed file is current.
Usage: python scripts/verdict_selection.py [RESULTS_ROOT]"""
import sys
from pathlib import Path
from tc2_nb.core import atomic_write
from tc2_nb.verdict import selection_csv

root = Path(sys.argv[1] if len(sys.argv) > 1 else 'results/verdict')
table = selection_csv(root)
atomic_write(root/'selection.csv', table.to_csv(index=False))
print(table.drop(columns='run').round(2).to_string(index=False))
