"""Two `tc2-sweep` processes on one papermill sweep share its points and never mark one failed (issue 33). Their
kernels' IPC sockets used to be `kernel-ipc-N` in the shared working folder, and the two processes raced for the same N
(a point failed with "Invalid Signature" in 2 of 4 repeats); each kernel now has a folder of its own."""
import subprocess, sys, textwrap
from pathlib import Path
import nbformat, pandas as pd

SWEEP = textwrap.dedent("""
    import sys, warnings
    warnings.filterwarnings('ignore')
    from tc2_nb.sweep import run_sweep, papermill_runner
    s = run_sweep(papermill_runner(sys.argv[1]), {}, {'seed': list(range(10))}, sys.argv[2], progress=False)
    print(s.to_json(orient='records'))
""")

def test_two_sweep_processes_through_papermill_never_fail_a_point(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell('seed, out_dir = 0, None', metadata={'tags': ['parameters']}),
                nbformat.v4.new_code_cell("import pandas as pd\nfrom tc2_nb.core import run_lock\n"      # as run_experiment does
                                          "from pathlib import Path\n"
                                          "with run_lock(out_dir):\n"
                                          "    if not Path('results.csv').exists(): pd.DataFrame([dict(metric='m', value=float(seed))]).to_csv('results.csv', index=False)")]
    nbformat.write(nb, tmp_path/'trivial.ipynb')
    out = tmp_path/'sweep'
    procs = [subprocess.Popen([sys.executable, '-c', SWEEP, str(tmp_path/'trivial.ipynb'), str(out)], cwd=tmp_path,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [p.communicate(timeout=600) for p in procs]
    assert all(p.returncode == 0 for p in procs), [r[1][-2000:] for r in results]
    rows = pd.concat([pd.read_json(__import__('io').StringIO(r[0].strip().splitlines()[-1])) for r in results])
    assert not (rows.status == 'failed').any(), rows[rows.status == 'failed'].to_dict('records')
    assert set(rows[rows.status == 'done'].seed) == set(range(10))   # each point done (by either; a late one finds it finished)
    assert not list(tmp_path.glob('kernel-ipc-*')) and not list(out.glob('*/failed.json'))
