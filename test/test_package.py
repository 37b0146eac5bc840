# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Packaging, style and layering checks over the whole repository."""

import ast
import importlib
import importlib.util
import json
import os
from pathlib import Path
import shutil
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = 'flowclas_ros'
CORE = ROOT / PACKAGE / 'core'
HEADER = (
    '# Copyright 2026 The flowclas_ros Authors',
    '# SPDX-License-Identifier: Apache-2.0',
)
HEADER_DIRS = (PACKAGE, 'test', 'scripts', 'launch')
# Top-level module names that mean "ROS": anything starting with one of these.
ROS_PREFIXES = ('rclpy', 'rosidl', 'sensor_msgs', 'std_msgs', 'diagnostic_msgs', 'rcl')
SKIP_DIRS = {'__pycache__', '.venv', 'build', 'install', 'log', '.git'}


def _python_files(*dirs):
    files = []
    for name in dirs:
        base = ROOT / name
        if not base.is_dir():
            continue
        for path in sorted(base.rglob('*.py')):
            if not SKIP_DIRS.intersection(path.relative_to(ROOT).parts):
                files.append(path)
    return files


def _module_name(path):
    parts = list(path.relative_to(ROOT).with_suffix('').parts)
    if parts[-1] == '__init__':
        parts.pop()
    return '.'.join(parts)


def _is_ros(module):
    return module.startswith(ROS_PREFIXES)


def _ruff_command():
    if importlib.util.find_spec('ruff') is not None:
        return [sys.executable, '-m', 'ruff']
    exe = shutil.which('ruff')
    if exe is not None:
        return [exe]
    return None


def _setup_call():
    """Return the keyword arguments of ``setup()`` in setup.py as AST nodes, names resolved."""
    tree = ast.parse((ROOT / 'setup.py').read_text(encoding='utf-8'))
    names = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    names[target.id] = node.value.value
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == 'setup'
        ):
            return {kw.arg: kw.value for kw in node.keywords}, names
    raise AssertionError('setup.py has no setup(...) call')


def _literal(node, names):
    if isinstance(node, ast.Name):
        return names[node.id]
    return ast.literal_eval(node)


def _console_scripts():
    kwargs, names = _setup_call()
    entry_points = _literal(kwargs['entry_points'], names)
    scripts = []
    for spec in entry_points['console_scripts']:
        name, target = (part.strip() for part in spec.split('=', 1))
        module, func = (part.strip() for part in target.split(':', 1))
        scripts.append((name, module, func))
    return scripts


# --- (a) ruff -------------------------------------------------------------------------------


@pytest.mark.linter
@pytest.mark.parametrize(
    'args',
    [['check', '--no-fix', '.'], ['format', '--check', '--diff', '.']],
    ids=['check', 'format'],
)
def test_ruff(args):
    ruff = _ruff_command()
    if ruff is None:
        pytest.skip('ruff is not installed (pip install -e ".[dev]")')
    result = subprocess.run(
        [*ruff, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, (
        f'ruff {" ".join(args)} failed; run `ruff check --fix . && ruff format .`:\n'
        f'{result.stdout}\n{result.stderr}'
    )


# --- (b) licence header ---------------------------------------------------------------------


@pytest.mark.linter
def test_every_python_file_has_the_licence_header():
    files = _python_files(*HEADER_DIRS)
    assert files, f'no Python files found under {HEADER_DIRS}'
    missing = []
    for path in files:
        lines = path.read_text(encoding='utf-8').splitlines()
        if lines and lines[0].startswith('#!'):
            lines = lines[1:]
        if tuple(lines[:2]) != HEADER:
            missing.append(str(path.relative_to(ROOT)))
    assert not missing, (
        'these files must start with the two lines\n    '
        + '\n    '.join(HEADER)
        + '\n(after an optional #! line):\n    '
        + '\n    '.join(missing)
    )


# --- (c) core never imports ROS -------------------------------------------------------------


def _core_modules():
    return [_module_name(path) for path in _python_files(f'{PACKAGE}/core')]


def test_core_imports_no_ros_module_at_run_time():
    modules = _core_modules()
    assert modules, f'no modules found under {CORE}'
    script = textwrap.dedent(
        """
        import importlib, json, sys, traceback
        failed = {}
        for name in json.loads(sys.argv[1]):
            try:
                importlib.import_module(name)
            except Exception:
                failed[name] = traceback.format_exc(limit=3)
        print(json.dumps({'failed': failed, 'modules': sorted(sys.modules)}))
        """
    )
    env = dict(os.environ)
    env['PYTHONPATH'] = os.pathsep.join(filter(None, [str(ROOT), env.get('PYTHONPATH')]))
    result = subprocess.run(
        [sys.executable, '-c', script, json.dumps(modules)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert not report['failed'], 'core modules failed to import:\n' + '\n'.join(
        f'{name}:\n{trace}' for name, trace in report['failed'].items()
    )
    ros = sorted({name.split('.')[0] for name in report['modules'] if _is_ros(name)})
    assert not ros, f'importing {PACKAGE}.core loaded ROS modules: {ros}'


def _imports(path):
    """Yield ``(line, absolute module name)`` for every import statement in ``path``."""
    tree = ast.parse(path.read_text(encoding='utf-8'), filename=str(path))
    package = _module_name(path).split('.')
    if path.name != '__init__.py':
        package = package[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                module = '.'.join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ''
            yield node.lineno, module
            # `from flowclas_ros import ros` names a module too.
            for alias in node.names:
                yield node.lineno, f'{module}.{alias.name}'


def test_core_has_no_ros_import_statically():
    files = _python_files(f'{PACKAGE}/core')
    assert files
    bad = []
    for path in files:
        for line, module in _imports(path):
            if _is_ros(module) or module.startswith(f'{PACKAGE}.ros'):
                bad.append(f'{path.relative_to(ROOT)}:{line}: {module}')
    assert not bad, f'{PACKAGE}.core must not import ROS or {PACKAGE}.ros:\n' + '\n'.join(bad)


# Folders whose direct modules and subpackages must import each other without cycles: the
# core as a whole (FlowCLAS counting as one unit) and the method's own folder inside it.
ACYCLIC = (f'{PACKAGE}.core', f'{PACKAGE}.core.flowclas')


def _unit(module: str, within: str = f'{PACKAGE}.core') -> str:
    """The unit a module belongs to: a package or module directly in ``within``, or a layer."""
    depth = within.count('.') + 2
    parts = module.split('.')
    inside = parts[: depth - 1] == within.split('.')
    return '.'.join(parts[:depth]) if inside else '.'.join(parts[:2])


def _edges(within: str = f'{PACKAGE}.core') -> dict[str, set[str]]:
    """Imports between units (see ``_unit``), over every module of the package."""
    edges: dict[str, set[str]] = {}
    for path in _python_files(PACKAGE):
        rel = path.relative_to(ROOT).with_suffix('')
        module = '.'.join(p for p in rel.parts if p != '__init__')
        for _, target in _imports(path):
            a, b = _unit(module, within), _unit(target, within)
            if target.startswith(f'{PACKAGE}.') and a != b:
                edges.setdefault(a, set()).add(b)
    return edges


def _cycles(edges: dict[str, set[str]], within: str) -> list[str]:
    """Units directly in ``within`` that are reachable from themselves."""
    prefix = f'{within}.'
    inner = {
        a: {b for b in bs if b.startswith(prefix)}
        for a, bs in edges.items()
        if a.startswith(prefix)
    }
    cycles = []
    for start in inner:
        seen, todo = set(), list(inner[start])
        while todo:
            unit = todo.pop()
            if unit == start:
                cycles.append(start)
                break
            if unit not in seen:
                seen.add(unit)
                todo.extend(inner.get(unit, ()))
    return cycles


def test_layers_go_one_way_and_core_packages_have_no_cycle():
    edges = _edges()
    order = {f'{PACKAGE}.core': 0, f'{PACKAGE}.ros': 1, f'{PACKAGE}.cli': 2}

    def layer(unit: str) -> int:
        return order.get('.'.join(unit.split('.')[:2]), 3)

    upward = [f'{a} -> {b}' for a, bs in edges.items() for b in bs if layer(b) > layer(a)]
    assert not upward, 'imports against the layers (core < ros < cli):\n' + '\n'.join(upward)

    # A cycle among a folder's units shows as a unit reachable from itself.
    for within in ACYCLIC:
        assert (ROOT / Path(*within.split('.'))).is_dir(), f'{within} is not a package'
        cycles = _cycles(_edges(within), within)
        assert not cycles, f'import cycle inside {within} through: {", ".join(cycles)}'


def test_cycle_check_finds_a_cycle():
    core = f'{PACKAGE}.core'
    edges = {f'{core}.a': {f'{core}.b'}, f'{core}.b': {f'{core}.a'}, f'{core}.c': {f'{core}.a'}}
    assert sorted(_cycles(edges, core)) == [f'{core}.a', f'{core}.b']
    assert _unit(f'{core}.flowclas.train.trainer') == f'{core}.flowclas'
    assert _unit(f'{core}.flowclas.train.trainer', f'{core}.flowclas') == f'{core}.flowclas.train'
    assert _unit(f'{core}.config', f'{core}.flowclas') == f'{PACKAGE}.core'


# --- (d) package.xml, setup.py and setup.cfg agree; entry points exist ----------------------


@pytest.mark.linter
def test_package_xml_and_setup_py_agree():
    xml = ET.parse(ROOT / 'package.xml').getroot()
    assert xml.get('format') == '3'
    assert xml.findtext('export/build_type') == 'ament_python'
    kwargs, names = _setup_call()
    name = _literal(kwargs['name'], names)
    version = _literal(kwargs['version'], names)
    assert name == xml.findtext('name') == PACKAGE
    assert version == xml.findtext('version')
    init = ast.parse((ROOT / PACKAGE / '__init__.py').read_text(encoding='utf-8'))
    versions = [
        node.value.value
        for node in init.body
        if isinstance(node, ast.Assign)
        and any(isinstance(t, ast.Name) and t.id == '__version__' for t in node.targets)
    ]
    assert versions == [version], f'{PACKAGE}.__version__ must be {version!r}'
    assert (ROOT / 'resource' / PACKAGE).is_file(), 'the ament resource marker is missing'


@pytest.mark.linter
def test_every_package_directory_has_an_init():
    # find_packages() skips a folder without __init__.py, so pip and colcon would not install it.
    missing = sorted(
        str(path.parent.relative_to(ROOT))
        for path in _python_files(PACKAGE)
        if not (path.parent / '__init__.py').is_file()
    )
    assert not missing, 'add an __init__.py to: ' + ', '.join(sorted(set(missing)))


@pytest.mark.linter
def test_setup_cfg_installs_scripts_where_ros2_run_looks():
    text = (ROOT / 'setup.cfg').read_text(encoding='utf-8')
    assert f'script_dir=$base/lib/{PACKAGE}' in text.replace(' ', '')
    assert f'install_scripts=$base/lib/{PACKAGE}' in text.replace(' ', '')


CONSOLE_SCRIPTS = _console_scripts()


@pytest.mark.linter
@pytest.mark.parametrize(
    ('script', 'module', 'func'), CONSOLE_SCRIPTS, ids=[entry[0] for entry in CONSOLE_SCRIPTS]
)
def test_console_script_target_exists(script, module, func):
    target = importlib.import_module(module)
    assert callable(getattr(target, func, None)), f'{script}: {module} has no callable {func}'
