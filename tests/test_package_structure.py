"""The package's shape: its parts in one dependency order (docs/architecture.md), every import
and every registry lookup by name going down that order (imports inside functions counted),
imports inside functions only for optional dependencies, and every module importable on its
own."""
import ast
import os
import os.path as osp
import re
import subprocess
import sys
import textwrap

import mmrepvit

PACKAGE_DIR = osp.dirname(mmrepvit.__file__)
REPO = osp.dirname(PACKAGE_DIR)
# The parts of the package, lowest first: a part imports only parts of lower layers.
# A part is a subpackage or a top-level module; the package's own __init__ is the top.
LAYERS = (
    ('errors', 'version', 'registry', 'utils'),
    ('checkpoint', ),
    ('models', ),
    ('fusion', ),
    ('cpu_fast_path', ),
    ('datasets', ),
    ('engine', ),
    ('config', ),
    ('model_variants', ),
    ('deployment', ),
    ('analysis', ),
    ('apis', ),
    ('demo', ),
    ('process_wide', ),
    ('__init__', ),
)
# What a function may import inside itself: dependencies a user may not have installed
# (mmdet / mmseg are each optional extras, the deployment runtimes and mmdeploy too; ExecuTorch
# and its quantiser need numpy 2, which a numpy 1 stack does not have).
OPTIONAL_IMPORTS = ('mmdet', 'mmseg', 'mmdeploy', 'onnx', 'onnxruntime', 'openvino', 'executorch',
                    'torchao')


def python_files(package_dir):
    for root, _, files in os.walk(package_dir):
        for name in files:
            if name.endswith('.py'):
                yield osp.join(root, name)


def part_of(path, package_dir):
    """The part a file belongs to: its first folder under the package, or its module name."""
    rel = osp.relpath(path, package_dir).split(os.sep)
    return rel[0] if len(rel) > 1 else rel[0][:-len('.py')]


def imported_parts(path, package_dir, package):
    """``{part: [line, ...]}`` of the package's parts ``path`` imports, at any depth."""
    module_dir = osp.dirname(path)
    found = {}
    for node in ast.walk(ast.parse(open(path).read())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = module_dir
            for _ in range(node.level - 1):
                base = osp.dirname(base)
            rel = osp.relpath(base, package_dir).split(os.sep)
            names = [p for p in rel if p != '.'] + (node.module.split('.') if node.module else [])
            targets = [names] if names else [[a.name] for a in node.names]
        elif isinstance(node, ast.ImportFrom) and (node.module or '').split('.')[0] == package:
            names = node.module.split('.')[1:]
            targets = [names] if names else [[a.name] for a in node.names]
        elif isinstance(node, ast.Import):
            targets = [a.name.split('.')[1:] for a in node.names
                       if a.name.split('.')[0] == package]
        else:
            continue
        for names in targets:
            part = names[0] if names else '__init__'
            found.setdefault(part, []).append(node.lineno)
    return found


def layer_violations(package_dir, layers):
    """``[(file, line, part, imported part)]`` for each import that does not go down."""
    rank = {part: i for i, layer in enumerate(layers) for part in layer}
    package = osp.basename(package_dir)
    bad = []
    for path in python_files(package_dir):
        part = part_of(path, package_dir)
        for target, lines in imported_parts(path, package_dir, package).items():
            if target != part and not rank.get(target, -1) < rank.get(part, -1):
                bad += [(osp.relpath(path, package_dir), line, part, target) for line in lines]
    return sorted(bad)


def registry_lookups_upward(package_dir, layers):
    """``[(file, line, part, part defining the name)]`` for each ``x.get('Name')`` /
    ``x.build(dict(type='Name'))`` naming a class of a higher part: a dependency by registry
    string, which the imports do not show."""
    rank = {part: i for i, layer in enumerate(layers) for part in layer}
    trees = {path: ast.parse(open(path).read()) for path in python_files(package_dir)}
    defined = {node.name: part_of(path, package_dir) for path, tree in trees.items()
               for node in ast.walk(tree) if isinstance(node, ast.ClassDef)}
    bad = []
    for path, tree in trees.items():
        part = part_of(path, package_dir)
        for call in ast.walk(tree):
            if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute)
                    and call.func.attr in ('get', 'build')):
                continue
            for node in ast.walk(ast.Module(body=[ast.Expr(a) for a in call.args] + [
                    ast.Expr(k.value) for k in call.keywords], type_ignores=[])):
                if isinstance(node, ast.Constant) and isinstance(node.value, str):
                    target = defined.get(node.value.rsplit('.', 1)[-1])
                    if target and target != part and not rank[target] < rank[part]:
                        bad.append((osp.relpath(path, package_dir), node.lineno, part, target))
    return sorted(bad)


def function_level_imports(package_dir):
    """``[(file, line, module)]`` of the imports written inside functions."""
    found = []
    for path in python_files(package_dir):
        for fn in ast.walk(ast.parse(open(path).read())):
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for node in ast.walk(fn):
                    if isinstance(node, ast.Import):
                        found += [(path, node.lineno, a.name) for a in node.names]
                    elif isinstance(node, ast.ImportFrom):
                        found.append((path, node.lineno,
                                      '.' * node.level + (node.module or '')))
    return found


def test_every_part_is_in_the_layer_order():
    parts = {part_of(path, PACKAGE_DIR) for path in python_files(PACKAGE_DIR)}
    listed = {part for layer in LAYERS for part in layer}
    assert parts == listed, f'not in LAYERS: {parts - listed}; gone: {listed - parts}'


def test_imports_go_down_the_layer_order():
    assert layer_violations(PACKAGE_DIR, LAYERS) == []


def test_registry_lookups_by_name_go_down_the_layer_order():
    assert registry_lookups_upward(PACKAGE_DIR, LAYERS) == []


def test_the_layer_check_sees_a_registry_lookup_of_a_higher_layer(tmp_path):
    """A lower part building a higher part's class from a registry by name: no import, the
    same circle."""
    pkg = tmp_path / 'toy'
    for part in ('low', 'high'):
        (pkg / part).mkdir(parents=True)
        (pkg / part / '__init__.py').write_text('')
    (pkg / 'high' / 'tool.py').write_text('class Loader:\n    pass\n')
    (pkg / 'low' / 'core.py').write_text(textwrap.dedent('''\
        def init(registry, module):
            registry.get('Loader')(module)
            return registry.build(dict(type='toy.Loader'))
        '''))
    layers = (('low', ), ('high', ))
    assert registry_lookups_upward(str(pkg), layers) == [('low/core.py', 2, 'low', 'high'),
                                                         ('low/core.py', 3, 'low', 'high')]
    assert registry_lookups_upward(str(pkg), layers[::-1]) == []


def test_imports_inside_functions_are_only_optional_dependencies():
    offending = [(osp.relpath(p, REPO), line, name)
                 for p, line, name in function_level_imports(PACKAGE_DIR)
                 if name.split('.')[0] not in OPTIONAL_IMPORTS]
    assert offending == []


def test_the_layer_check_sees_a_circle_through_a_function_level_import(tmp_path):
    """A package whose lower part imports a higher one inside a function: a circle that a
    check of module-level imports alone would miss."""
    pkg = tmp_path / 'toy'
    (pkg / 'low').mkdir(parents=True)
    (pkg / 'high').mkdir()
    (pkg / '__init__.py').write_text('')
    (pkg / 'low' / '__init__.py').write_text('')
    (pkg / 'low' / 'core.py').write_text(textwrap.dedent('''\
        def helper():
            from ..high.tool import run  # the circle: low -> high
            return run
        '''))
    (pkg / 'high' / '__init__.py').write_text('from ..low.core import helper\n')
    (pkg / 'high' / 'tool.py').write_text('from toy.low import core\n\n\ndef run():\n    pass\n')
    layers = (('low', ), ('high', ), ('__init__', ))
    assert layer_violations(str(pkg), layers) == [('low/core.py', 2, 'low', 'high')]
    (pkg / 'low' / 'core.py').write_text('def helper():\n    return None\n')
    assert layer_violations(str(pkg), layers) == []


def test_the_architecture_page_lists_the_same_order():
    text = open(osp.join(REPO, 'docs', 'architecture.md')).read()
    m = re.search(r'```text\n(.*?)```', text, re.S)
    assert m, 'docs/architecture.md: no ```text block with the layer order'
    written = [tuple(re.findall(r'[a-z_]+', line)) for line in m.group(1).splitlines()
               if line.strip()]
    assert written == [layer for layer in LAYERS if layer != ('__init__', )]


def test_every_module_imports_in_a_fresh_interpreter():
    """``import mmrepvit.<x>`` always runs the package's ``__init__`` first, so one fresh
    interpreter importing each module in turn (deepest first) sees what each would alone."""
    names = sorted({('mmrepvit.' + osp.relpath(p, PACKAGE_DIR)[:-3].replace(os.sep, '.'))
                    .replace('.__init__', '') for p in python_files(PACKAGE_DIR)},
                   key=lambda n: -n.count('.'))
    code = ('import importlib, sys\n'
            f'for name in {names!r}:\n'
            '    importlib.import_module(name)\n'
            'print("imported", len(sys.modules))\n')
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                            cwd=REPO, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert len(names) > 40
