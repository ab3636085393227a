"""The package's shape: no import circles, the model core independent of the tools around it,
every module importable on its own."""
import ast
import os.path as osp
import pkgutil
import subprocess
import sys

import mmrepvit

PACKAGE_DIR = osp.dirname(mmrepvit.__file__)
# the model core may use the registry and the error types, nothing that is built around it
CORE = 'mmrepvit.models'
NOT_FOR_CORE = ('mmrepvit.apis', 'mmrepvit.engine', 'mmrepvit.analysis', 'mmrepvit.checkpoint',
                'mmrepvit.datasets', 'mmrepvit.deployment')


def modules():
    return sorted(m.name for m in pkgutil.walk_packages([PACKAGE_DIR], 'mmrepvit.'))


def source_of(name):
    base = osp.join(osp.dirname(PACKAGE_DIR), *name.split('.'))
    return base + '/__init__.py' if osp.isdir(base) else base + '.py'


def imports_of(name):
    """The ``mmrepvit`` modules ``name`` imports anywhere in its file (inside functions too),
    as the nearest existing module of each imported name."""
    path = source_of(name)
    package = name if path.endswith('__init__.py') else name.rsplit('.', 1)[0]
    known = set(modules()) | {'mmrepvit'}
    found = set()
    for node in ast.walk(ast.parse(open(path).read())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split('.')
                base = '.'.join(parts[:len(parts) - node.level + 1])
                base = f'{base}.{node.module}' if node.module else base
            else:
                base = node.module or ''
            targets = [f'{base}.{a.name}' for a in node.names] + [base]
        elif isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        else:
            continue
        for target in targets:
            if target.split('.')[0] != 'mmrepvit':
                continue
            while target not in known:
                target = target.rsplit('.', 1)[0]
            if target != name:
                found.add(target)
                break
    return found


def test_no_import_circles():
    graph = {name: imports_of(name) for name in modules()}
    # a package's __init__ gathering its own submodules is not a circle of theirs
    edges = {a: {b for b in bs if not (osp.basename(source_of(a)) == '__init__.py'
                                       and b.startswith(a + '.'))}
             for a, bs in graph.items()}
    circles = []

    def visit(node, path):
        for nxt in edges.get(node, ()):
            if nxt in path:
                circles.append(path[path.index(nxt):] + [nxt])
            elif len(path) < 12:
                visit(nxt, path + [nxt])

    for start in edges:
        visit(start, [start])
    assert not circles, f'import circles: {circles[:5]}'


def test_model_core_imports_nothing_built_around_it():
    offending = {name: sorted(t for t in imports_of(name) if t.startswith(NOT_FOR_CORE))
                 for name in modules() if name.startswith(CORE)}
    assert not any(offending.values()), offending


def test_every_module_imports_in_a_fresh_interpreter():
    """``import mmrepvit.<x>`` always runs the package's ``__init__`` first, so one fresh
    interpreter importing each module in turn (deepest first) sees what each would alone."""
    names = sorted(modules(), key=lambda n: -n.count('.'))
    code = ('import importlib, sys\n'
            f'for name in {names!r}:\n'
            '    importlib.import_module(name)\n'
            'print("imported", len(sys.modules))\n')
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                            cwd=osp.dirname(osp.dirname(PACKAGE_DIR)), timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert len(names) > 40
