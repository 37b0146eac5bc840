# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""docs/node.md's parameter reference is the one NodeParams generates, so the two never drift."""

from pathlib import Path
import re

from flowclas_ros.ros.params import PARAMS, markdown_table

DOC = Path(__file__).resolve().parents[3] / 'docs' / 'node.md'
BLOCK = re.compile(r'<!-- params:begin -->\n(.*?)<!-- params:end -->', re.S)


def test_docs_parameter_table_matches_node_params():
    block = BLOCK.search(DOC.read_text(encoding='utf-8'))
    assert block, f'{DOC} has no <!-- params:begin --> ... <!-- params:end --> block'
    assert block.group(1) == markdown_table(), (
        f'the parameter table in {DOC} differs from NodeParams; regenerate it with '
        '`.venv/bin/python scripts/gen_node_docs.py`'
    )


def test_table_has_one_row_per_parameter_with_when():
    rows = [r for r in markdown_table().splitlines() if r.startswith('| `')]
    assert [r.split('`')[1] for r in rows] == list(PARAMS)
    for row, meta in zip(rows, PARAMS.values(), strict=True):
        assert f'| {meta["when"]} |' in row
