"`scripts/structure_check.py` (issue 32's measure) runs on the package and finds what it looks for."
import subprocess, sys
from pathlib import Path

def test_structure_check_reports_long_functions_cycles_and_upward_imports():
    root = Path(__file__).resolve().parents[1]
    r = subprocess.run([sys.executable, str(root/'scripts/structure_check.py'), '--top', '3'], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith('functions over 60 lines: ') and len(lines[1:4]) == 3
    assert any(l.startswith('import cycles: ') for l in lines) and any(l.startswith('upward imports: ') for l in lines)
    longest = int(lines[1].split()[0])
    assert longest >= int(lines[2].split()[0]) >= int(lines[3].split()[0]) > 0       # sorted, longest first


def test_calibration_names_no_method():
    "ARCHITECTURE.md: calibration never knows which SSL method it serves; each method's `loss_terms` hook says how its loss splits."
    from tc2_nb.methods import METHODS
    src = (Path(__file__).resolve().parents[1]/'tc2_nb'/'calibration.py').read_text()
    assert '__name__' not in src
    assert not [c.__name__ for c in METHODS.values() if f"'{c.__name__}'" in src or f'"{c.__name__}"' in src]
