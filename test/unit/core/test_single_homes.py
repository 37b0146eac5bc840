# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Each shared default and range is written once: a second literal copy fails here.

Two copies drift apart (the flow classes once defaulted to 8 steps while ``FlowConfig`` said
4), so the package's source is scanned for literal restatements of the main ones. Each check
lists the files that state the value; exactly its home may.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from flowclas_ros.core.config import IGNORE_LABEL, INPUT_SIZE
from flowclas_ros.core.thresholds.fpr import TARGET_FPR_RANGE

ROOT = Path(__file__).resolve().parents[3]
PACKAGE = ROOT / 'flowclas_ros'

FLOW_SIZE_NAMES = {'steps', 'hidden_ratio', 'clamp'}
PRECISION_NAMES = {'fp32', 'fp16', 'bf16'}
SIZE_POLICY_NAMES = {'fixed', 'keep_aspect', 'native'}

# A second home in a file owned elsewhere, left for its owner to remove (see each note); the
# last test fails once an entry is no longer needed, so that this list only shrinks.
PENDING: dict[tuple[str, str], str] = {}

Hit = tuple[int, str]  # line, what was found


def _number(node: ast.AST) -> float | None:
    """The value of a numeric literal (``-1`` included), else None."""
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        value = _number(node.operand)
        return None if value is None else -value
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return node.value
    return None


def _strings(node: ast.AST) -> set[str]:
    """The string items of a tuple, list or set literal."""
    if not isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return set()
    return {e.value for e in node.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)}


def _int_sequence(node: ast.AST | None) -> bool:
    """A non-empty tuple or list literal of integers, e.g. ``(16, 32)`` or ``[-1]``."""
    return (
        isinstance(node, (ast.Tuple, ast.List))
        and bool(node.elts)
        and all(isinstance(_number(e), int) for e in node.elts)
    )


def _names(node: ast.AST) -> set[str]:
    """Identifiers a node mentions: names, attributes, arguments and keywords."""
    out = set()
    for sub in ast.walk(node):
        if isinstance(sub, ast.Name):
            out.add(sub.id)
        elif isinstance(sub, ast.Attribute):
            out.add(sub.attr)
        elif isinstance(sub, ast.arg):
            out.add(sub.arg)
    return out


def _targets(node: ast.AST) -> set[str]:
    """Names an assignment binds."""
    if isinstance(node, ast.Assign):
        return set().union(*(_names(t) for t in node.targets))
    if isinstance(node, ast.AnnAssign):
        return _names(node.target)
    return set()


def _defaults(tree: ast.AST) -> Iterator[tuple[str, ast.AST]]:
    """``(name, default)`` of every function parameter and class-level field with a value."""
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            a = node.args
            positional = a.posonlyargs + a.args
            pairs = zip(positional[len(positional) - len(a.defaults) :], a.defaults, strict=True)
            kw = [(p, d) for p, d in zip(a.kwonlyargs, a.kw_defaults, strict=True) if d]
            for param, default in [*pairs, *kw]:
                yield param.arg, default
        elif isinstance(node, ast.ClassDef):
            for stmt in node.body:
                if isinstance(stmt, ast.AnnAssign) and stmt.value is not None:
                    yield from ((name, stmt.value) for name in _names(stmt.target))


def flow_size(tree: ast.AST) -> Iterator[Hit]:
    """Defaults of the flow's size, other than through a name (``FlowConfig`` has them)."""
    for name, default in _defaults(tree):
        if name in FLOW_SIZE_NAMES and not isinstance(default, (ast.Name, ast.Attribute)):
            yield default.lineno, f'{name} = {ast.unparse(default)}'


def taps(tree: ast.AST) -> Iterator[Hit]:
    """Literal encoder taps or layers: as a default, a keyword, or a ``*TAPS``/``*LAYERS``."""
    for name, default in _defaults(tree):
        if name in ('taps', 'layers') and _int_sequence(default):
            yield default.lineno, f'{name} = {ast.unparse(default)}'
    for node in ast.walk(tree):
        keyword = isinstance(node, ast.keyword) and node.arg in ('taps', 'layers')
        named = any(n.upper().endswith(('TAPS', 'LAYERS')) for n in _targets(node))
        if (keyword or named) and _int_sequence(node.value):
            yield node.value.lineno, ast.unparse(node)
        fallback = isinstance(node, ast.BoolOp) and {'taps', 'layers'} & _names(node)
        if fallback and any(_int_sequence(v) for v in node.values):  # layers or (-1,)
            yield node.lineno, ast.unparse(node)


def input_size(tree: ast.AST) -> Iterator[Hit]:
    """The default network size, as a number anywhere in code (docstrings do not count)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and _number(node) in set(INPUT_SIZE):
            yield node.lineno, repr(node.value)


def target_fpr_range(tree: ast.AST) -> Iterator[Hit]:
    """Bounds of ``target_fpr``: in a comparison with it, next to it, or in its message."""
    low, high = TARGET_FPR_RANGE
    for node in ast.walk(tree):
        if 'TARGET_FPR_RANGE' in _targets(node) and isinstance(node.value, ast.Tuple):
            yield node.lineno, f'TARGET_FPR_RANGE = {ast.unparse(node.value)}'
        if isinstance(node, ast.Compare) and 'target_fpr' in _names(node):
            numbers = [n for n in (node.left, *node.comparators) if _number(n) is not None]
            yield from ((n.lineno, ast.unparse(node)) for n in numbers)
        about = isinstance(node, ast.keyword) and node.arg == 'target_fpr'
        if about or 'target_fpr' in _targets(node):
            for sub in ast.walk(node):
                if _number(sub) == high:
                    yield sub.lineno, f'target_fpr ... {high}'
        text = node.value if isinstance(node, ast.Constant) else None
        if isinstance(text, str) and f'({low:g}, {high:g}]' in text:
            yield node.lineno, repr(text)


def ignore_label(tree: ast.AST) -> Iterator[Hit]:
    """The void label: compared with, as a default, bound to a name, or among mask values."""
    for node in ast.walk(tree):
        operands = (node.left, *node.comparators) if isinstance(node, ast.Compare) else ()
        if any(_number(n) == IGNORE_LABEL for n in operands):
            yield node.lineno, ast.unparse(node)
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            values = {_number(e) for e in node.elts}
            if {0, 1, IGNORE_LABEL} <= values:
                yield node.lineno, ast.unparse(node)
        named = {n for n in _targets(node) if 'IGNORE' in n.upper()}
        if named and _number(node.value) == IGNORE_LABEL:
            yield node.lineno, f'{", ".join(sorted(named))} = {IGNORE_LABEL}'
    for name, default in _defaults(tree):
        if 'ignore' in name and _number(default) == IGNORE_LABEL:
            yield default.lineno, f'{name} = {IGNORE_LABEL}'


def _named_set(tree: ast.AST, name: str, items: set[str]) -> Iterator[Hit]:
    """Literals holding two or more of ``items``, and module-level bindings of ``name``."""
    for node in ast.walk(tree):
        if len(_strings(node) & items) >= 2:
            yield node.lineno, ast.unparse(node)
    for stmt in tree.body:
        if name in _targets(stmt):
            yield stmt.lineno, ast.unparse(stmt)


def precisions(tree: ast.AST) -> Iterator[Hit]:
    """Lists of precision names, and ``PRECISIONS`` itself."""
    return _named_set(tree, 'PRECISIONS', PRECISION_NAMES)


def size_policies(tree: ast.AST) -> Iterator[Hit]:
    """Lists of network size policies, and ``SIZE_POLICIES`` itself."""
    return _named_set(tree, 'SIZE_POLICIES', SIZE_POLICY_NAMES)


CONFIG = 'flowclas_ros/core/config.py'
# concept -> (its one home, the check that finds literal statements of it)
HOMES: dict[str, tuple[str, Callable[[ast.AST], Iterator[Hit]]]] = {
    'flow size': (CONFIG, flow_size),
    'taps/layers': (CONFIG, taps),
    'input size': (CONFIG, input_size),
    'target_fpr range': ('flowclas_ros/core/thresholds/fpr.py', target_fpr_range),
    'ignore label': (CONFIG, ignore_label),
    'PRECISIONS': (CONFIG, precisions),
    'SIZE_POLICIES': ('flowclas_ros/core/data/images.py', size_policies),
}


def _trees() -> dict[str, ast.AST]:
    files = sorted(p for p in PACKAGE.rglob('*.py') if '__pycache__' not in p.parts)
    return {str(p.relative_to(ROOT)): ast.parse(p.read_text(), str(p)) for p in files}


def _found(concept: str, trees: dict[str, ast.AST]) -> dict[str, list[Hit]]:
    check = HOMES[concept][1]
    found = {path: sorted(set(check(tree))) for path, tree in trees.items()}
    return {path: hits for path, hits in found.items() if hits}


@pytest.fixture(scope='module')
def trees() -> dict[str, ast.AST]:
    return _trees()


@pytest.mark.parametrize('concept', HOMES)
def test_each_default_and_range_has_one_home(concept, trees):
    home = HOMES[concept][0]
    found = _found(concept, trees)
    assert home in found, f'{concept}: its home {home} no longer states it'
    others = {p: h for p, h in found.items() if p != home and (concept, p) not in PENDING}
    where = '; '.join(f'{p}:{line} {text}' for p, hits in others.items() for line, text in hits)
    assert not others, f'{concept} is stated again outside {home}: {where} (import it)'


@pytest.mark.parametrize(
    ('concept', 'source'),
    [
        ('flow size', 'class Flow:\n    hidden_ratio: float = 1.0\n'),
        ('flow size', 'def flow(channels, steps=8):\n    pass\n'),
        ('taps/layers', 'DEFAULT_TAPS = (16, 32)\n'),
        ('taps/layers', 'def build(name, layers=(-1,)):\n    pass\n'),
        ('taps/layers', 'b = BackboneConfig(layers=[32])\n'),
        ('taps/layers', 'taps = tuple(layers or (16, 32))\n'),
        ('input size', 'size = [448, 448]\n'),
        ('target_fpr range', 'ok = 0 < target_fpr <= 0.5\n'),
        ('target_fpr range', 'class P:\n    target_fpr: float = param(0.01, low=0.0, high=0.5)\n'),
        ('target_fpr range', "message = 'target_fpr must be in (0, 0.5]'\n"),
        ('ignore label', 'valid = labels != 255\n'),
        ('ignore label', 'def metric(scores, labels, ignore_label=255):\n    pass\n'),
        ('ignore label', 'VOID = np.isin(mask, (0, 1, 255))\n'),
        ('PRECISIONS', "PRECISIONS = ('fp32', 'fp16')\n"),
        ('PRECISIONS', "p.add_argument('--precision', choices=('fp32', 'fp16'))\n"),
        ('SIZE_POLICIES', "SIZE_POLICIES = ('model', *OTHERS)\n"),
        ('SIZE_POLICIES', "choices = ['fixed', 'keep_aspect', 'native']\n"),
    ],
)
def test_a_second_literal_home_is_found(concept, source):
    assert list(HOMES[concept][1](ast.parse(source))), f'{concept} not found in {source!r}'


@pytest.mark.parametrize(
    'source',
    [
        'x = (rgb * 255).round()\n',  # pixel scaling, not the void label
        "if precision == 'fp16':\n    pass\n",
        'def flow(channels, steps: int = STEPS):\n    pass\n',
        'rule = MaskRule(target_fpr=0.01)\n',
    ],
)
def test_uses_that_are_not_a_second_home_pass(source):
    tree = ast.parse(source)
    assert not [(c, hit) for c, (_, check) in HOMES.items() for hit in check(tree)]


def test_pending_entries_are_still_needed(trees):
    stale = [key for key in PENDING if key[1] not in _found(key[0], trees)]
    assert not stale, f'remove from PENDING, fixed already: {stale}'
