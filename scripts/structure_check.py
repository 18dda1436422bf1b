"""Issue 32's structure goals, measured from the code as a reviewer would: the longest functions in tc2_nb/ (goal: none
over 60 lines), import cycles between its modules, and imports that go up ARCHITECTURE.md's layering (goal: zero of
each). Imports inside functions count: they are how a lower layer reaches up today.
Usage: python scripts/structure_check.py [--top 15] [--max-lines 60]"""
import argparse, ast, sys
from pathlib import Path

PKG = Path(__file__).resolve().parents[1]/'tc2_nb'
# layer of each module (lower number: lower layer); a module may import its own layer and lower ones. TrainConfig is a
# leaf (issue 32: plain settings, no import of the layers it configures)
LAYERS = {'core': 0, 'distributed': 0, 'data': 1, 'views': 2, 'tasks': 3, 'backbones': 1, 'features': 3, 'losses': 1, 'methods': 2,
          'calibration': 3, 'train_config': 0, 'preflight': 4, 'optim': 4, 'grouped': 4, 'task_batching': 4, 'stage1': 4, 'bilevel': 5, 'monitor': 5, 'sinks': 5, 'trainer': 6,
          'evaluate': 6, 'theorem1': 6, 'export': 7, 'experiment': 7, 'sweep': 8, 'launch': 8, 'cli': 9, 'demo': 9}

def module_of(path:Path) -> str:
    rel = path.relative_to(PKG).with_suffix('')
    return rel.parts[0]                         # tc2_nb/methods/*.py is the layer 'methods'

def imports(tree:ast.AST, mod:str) -> set[str]:
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            name = node.module or ''
            if node.level and node.level > 0:       # relative: .core, ..core, or `from . import x`
                parts = name.split('.') if name else [a.name for a in node.names]
                out.add(parts[0])
            elif name.startswith('tc2_nb.'): out.add(name.split('.')[1])
        elif isinstance(node, ast.Import):
            out |= {a.name.split('.')[1] for a in node.names if a.name.startswith('tc2_nb.')}
    return {m for m in out if m in LAYERS and m != mod}

def functions(tree:ast.AST, path:Path):
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node.end_lineno - node.lineno + 1, f"{path.relative_to(PKG.parent)}:{node.lineno} {node.name}"

def cycles(graph:dict) -> list[list[str]]:
    "Every elementary cycle's smallest rotation, found by DFS from each node (the graph is small)."
    found = set()
    def dfs(start, node, path):
        for nxt in graph.get(node, ()):
            if nxt == start: found.add(tuple(min((path[i:] + path[:i]) for i in range(len(path)))))
            elif nxt not in path and nxt > start: dfs(start, nxt, path + [nxt])
    for n in sorted(graph): dfs(n, n, [n])
    return [list(c) for c in sorted(found)]

def main():
    ap = argparse.ArgumentParser(); ap.add_argument('--top', type=int, default=15); ap.add_argument('--max-lines', type=int, default=60)
    a = ap.parse_args()
    graph, funcs = {}, []
    for f in sorted(PKG.rglob('*.py')):
        if f.name == '_modidx.py': continue
        tree, mod = ast.parse(f.read_text()), module_of(f)
        graph.setdefault(mod, set()).update(imports(tree, mod))
        funcs += list(functions(tree, f))
    funcs.sort(reverse=True)
    long = [x for x in funcs if x[0] > a.max_lines]
    print(f"functions over {a.max_lines} lines: {len(long)}")
    for n, where in funcs[:a.top]: print(f"  {n:4d}  {where}")
    cyc = cycles(graph)
    print(f"import cycles: {len(cyc)}")
    for c in cyc: print('  ' + ' -> '.join(c + [c[0]]))
    up = sorted((m, t) for m, ts in graph.items() for t in ts if LAYERS[t] > LAYERS[m])
    print(f"upward imports: {len(up)}")
    for m, t in up: print(f"  {m} (layer {LAYERS[m]}) imports {t} (layer {LAYERS[t]})")
    return 0

if __name__ == '__main__': sys.exit(main())
