# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Malformed frames in a bag, through flowclas-eval --bag and through flowclas-replay + node."""

import ast
from collections import Counter
import os
import subprocess
import sys
import time

from models import make_model
import pytest
from rosnode import ENV, Client, NodeProcess, wait_for
from sensor_msgs.msg import Image

from flowclas_ros.core.data.bags import COMPRESSED, IMAGE, BagWriter
from flowclas_ros.core.data.malformed import fuzz_stream

pytestmark = pytest.mark.ros
RAW, COMPRESSED_TOPIC = '/fz/image', '/fz/image/compressed'
GARBAGE = (b'\x00\x01\x00\x00', b'\x00\x01\x00\x00\xff\xff\xff\xff', b'')


@pytest.fixture(scope='module')
def fuzz_bag(tmp_path_factory):
    """Raw and compressed topics, 60 frames each, plus undeserializable messages on the raw one."""
    bag = tmp_path_factory.mktemp('fuzz') / 'bag'
    want: dict[str, Counter] = {}
    with BagWriter(bag) as writer:
        for topic, msgtype, compressed in (
            (RAW, IMAGE, False),
            (COMPRESSED_TOPIC, COMPRESSED, True),
        ):
            want[topic] = Counter()
            for i, (fields, reason) in enumerate(fuzz_stream(60, seed=7, compressed=compressed)):
                ns = (i + 1) * 10**6
                writer.write(topic, msgtype, ns, stamp_ns=ns, frame_id='cam', **fields)
                want[topic][reason] += 1
        for i, cdr in enumerate(GARBAGE):
            writer.write_raw(RAW, IMAGE, 10**9 + i, cdr)
    return bag, want


def _run(module: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, '-m', module, *args],
        capture_output=True, text=True, timeout=timeout, env=dict(os.environ) | ENV,
    )  # fmt: skip


def _printed_dict(stdout: str, prefix: str) -> dict:
    line = next(line for line in stdout.splitlines() if line.startswith(prefix))
    return ast.literal_eval(line[len(prefix) :].strip())


@pytest.mark.parametrize('topic', [RAW, COMPRESSED_TOPIC])
def test_eval_bag_counts_every_malformed_frame(fuzz_bag, topic, tmp_path):
    bag, want = fuzz_bag
    model = make_model(tmp_path / 'model', 64)
    out = tmp_path / 'out'
    r = _run(
        'flowclas_ros.cli.eval',
        *('--model', str(model), '--bag', str(bag), '--topic', topic, '--out-bag', str(out)),
    )
    assert r.returncode == 0, r.stderr
    expected = {k: v for k, v in want[topic].items() if k is not None}
    if topic == RAW:
        expected['corrupt_message'] = len(GARBAGE)
    assert _printed_dict(r.stdout, 'skipped undecodable frames:') == expected
    assert f'wrote {want[topic][None]} frames' in r.stdout


@pytest.mark.slow
@pytest.mark.parametrize('transport', ['raw', 'compressed'])
def test_replay_into_the_node_counts_every_malformed_frame(fuzz_bag, transport, tmp_path):
    bag, want = fuzz_bag
    topic = RAW if transport == 'raw' else COMPRESSED_TOPIC
    model = make_model(tmp_path / 'model', 64)
    client = Client()
    node = NodeProcess(
        tmp_path, 'fz', model_dir=str(model), input_transport=transport,
        process_every_frame=True, max_queue=200, diagnostics_period_s=0.2,
    )  # fmt: skip
    try:
        status = f'flowclas: {topic}'
        wait_for(lambda: client.diagnostics(status), 60, 'the node')
        scores = client.subscribe('/fz/anomaly/score', Image)
        r = _run(
            'flowclas_ros.cli.replay', str(bag), '--topics', topic, '--wait-subscribers', '30',
            timeout=120,
        )  # fmt: skip
        assert r.returncode == 0, r.stderr
        if transport == 'raw':
            assert f"cannot be deserialized: {{'{RAW}': {len(GARBAGE)}}}" in r.stdout
        expected = {k: v for k, v in want[topic].items() if k is not None}

        def counts() -> tuple:
            values = client.diagnostics(status)[2]
            rejected = {k[9:]: int(v) for k, v in values.items() if k.startswith('rejected.')}
            return rejected, int(values['frames_processed']), int(values['frames_received'])

        goods = want[topic][None]
        wait_for(lambda: counts()[:2] == (expected, goods), 60, 'every frame accounted for')
        time.sleep(0.5)
        assert counts() == (expected, goods, sum(want[topic].values()))
        assert len(scores) == goods
        assert node.proc.poll() is None
    finally:
        assert node.stop() == 0, node.text()
        client.close()
