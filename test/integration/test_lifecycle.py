# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""The managed node driven by a lifecycle client, and QoS that follows the camera's publishers."""

import time

from imagemsgs import encode
from lifecycle_msgs.msg import State, Transition
from lifecycle_msgs.srv import ChangeState, GetState
from models import make_model, smooth_image
import numpy as np
import pytest
from rosnode import LIFECYCLE_NODE, Client, Outputs, next_stamp, send, start_node, wait_for
from sensor_msgs.msg import CameraInfo, Image

from flowclas_ros.core.data.imagemsg import image_to_rgb
from flowclas_ros.core.device import hardware_name
from flowclas_ros.core.inference import Detector
from flowclas_ros.ros.diagnostics import STAGES

pytestmark = pytest.mark.ros
OK, WARN, ERROR, STALE = 0, 1, 2, 3


@pytest.fixture(scope='module')
def model_dir(tmp_path_factory):
    return make_model(tmp_path_factory.mktemp('model') / 'm64', 64)


@pytest.fixture(scope='module')
def client():
    c = Client()
    yield c
    c.close()


def _state(client, node):
    return client.call(GetState, f'{node}/get_state', GetState.Request()).current_state.id


def _transition(client, node, transition):
    request = ChangeState.Request(transition=Transition(id=transition))
    return client.call(ChangeState, f'{node}/change_state', request).success


def _quiet(client, pub, msg, outputs, seconds=2.0):
    """Publish fresh frames for ``seconds``; True when none of them produced an output."""
    first = next_stamp(20)
    for i in range(20):
        msg.header.stamp.sec = first + i
        pub.publish(msg)
        time.sleep(seconds / 20)
    time.sleep(0.5)
    return all(m.header.stamp.sec < first for m in outputs.lists['score'])


def test_a_lifecycle_client_drives_the_managed_node(tmp_path, client, model_dir):
    node = start_node(
        tmp_path, client, 'lc', 'image', command=LIFECYCLE_NODE,
        model_dir=str(tmp_path / 'missing'), diagnostics_period_s=0.2,
    )  # fmt: skip
    status = 'flowclas: /lc/image'

    def diagnosed(level, state):
        def check():
            d = client.diagnostics(status)
            return d if d[0] == level and d[2]['lifecycle_state'] == state else None

        return wait_for(check, 20, f'diagnostics {level} in {state}')

    try:
        name = node.name
        assert _state(client, name) == State.PRIMARY_STATE_UNCONFIGURED
        diagnosed(STALE, 'unconfigured')
        pub = client.publisher('/lc/image', Image)
        outputs = Outputs(client, '/lc', names=('score',))
        msg = encode(smooth_image(seed=4), 'rgb8')

        # A broken model directory: configure fails, says why, and the node stays unconfigured.
        assert not _transition(client, name, Transition.TRANSITION_CONFIGURE)
        assert _state(client, name) == State.PRIMARY_STATE_UNCONFIGURED
        _, message, _ = diagnosed(ERROR, 'unconfigured')
        assert 'configure failed' in message
        assert 'missing' in message

        (result,) = client.set_parameters(name, model_dir=str(model_dir))
        assert result.successful
        for _ in range(2):  # configure and activate again after a cleanup
            assert _transition(client, name, Transition.TRANSITION_CONFIGURE)
            assert _state(client, name) == State.PRIMARY_STATE_INACTIVE
            _, _, values = diagnosed(OK, 'inactive')
            assert values['model_dir'] == str(model_dir)
            assert _quiet(client, pub, msg, outputs)
            assert client.node.count_subscribers('/lc/image') == 0

            assert _transition(client, name, Transition.TRANSITION_ACTIVATE)
            assert _state(client, name) == State.PRIMARY_STATE_ACTIVE
            stamp = send(pub, msg, lambda s: outputs.get('score', s))
            score = outputs.get('score', stamp)
            expected = Detector.load(model_dir)(image_to_rgb(msg))
            got = np.frombuffer(score.data, '<f4').reshape(score.height, score.width)
            np.testing.assert_allclose(got, expected, atol=1e-4)

            assert _transition(client, name, Transition.TRANSITION_DEACTIVATE)
            assert _state(client, name) == State.PRIMARY_STATE_INACTIVE
            assert _quiet(client, pub, msg, outputs)

            assert _transition(client, name, Transition.TRANSITION_CLEANUP)
            assert _state(client, name) == State.PRIMARY_STATE_UNCONFIGURED
            _, _, values = diagnosed(STALE, 'unconfigured')
            assert values['model_dir'] == ''  # the model is gone
            assert client.node.count_publishers('/lc/anomaly/score') == 0

        assert _transition(client, name, Transition.TRANSITION_CONFIGURE)
        assert _transition(client, name, Transition.TRANSITION_ACTIVATE)
        assert _transition(client, name, Transition.TRANSITION_ACTIVE_SHUTDOWN)
        assert _state(client, name) == State.PRIMARY_STATE_FINALIZED
        diagnosed(STALE, 'finalized')
    finally:
        assert node.stop() == 0, node.text()


def test_auto_qos_follows_the_publishers_and_camera_info_goes_with_every_output(
    tmp_path, client, model_dir
):
    node = start_node(
        tmp_path, client, 'auto', 'image', model_dir=str(model_dir), diagnostics_period_s=0.2,
        process_every_frame=True,
    )  # fmt: skip
    status = 'flowclas: /auto/image'

    def reliability(expected):
        def check():
            values = client.diagnostics(status)[2]
            return values if values['input_reliability'] == f'auto: {expected}' else None

        return wait_for(check, 20, f'input_reliability auto: {expected}')

    try:
        outputs = Outputs(client, '/auto', names=('score',))
        infos = client.subscribe('/auto/anomaly/camera_info', CameraInfo)
        info_pub = client.publisher('/auto/camera_info', CameraInfo, best_effort=True)
        info = CameraInfo(width=56, height=40, distortion_model='plumb_bob')
        info.k = [50.0, 0.0, 28.0, 0.0, 50.0, 20.0, 0.0, 0.0, 1.0]
        msg = encode(smooth_image(seed=6), 'rgb8')

        # A reliable camera: subscribed reliable, every frame of a burst arrives.
        reliable = client.publisher('/auto/image', Image)
        reliability('reliable')
        send(reliable, msg, lambda s: info_pub.publish(info) or outputs.get('score', s))
        first, count = next_stamp(30), 30
        for i in range(count):
            msg.header.stamp.sec = first + i
            reliable.publish(msg)
            time.sleep(1 / 30)
        burst = set(range(first, first + count))
        wait_for(
            lambda: burst <= {m.header.stamp.sec for m in outputs.lists['score']},
            30,
            'a score for every frame of the burst',
        )
        values = client.diagnostics(status)[2]
        assert values['frames_lost'] == '0'
        # The per-stage budget: every stage timed, each within the frame's latency.
        send(reliable, msg, lambda _: client.diagnostics(status)[2]['stage.publish_ms'] != 'nan')
        values = client.diagnostics(status)[2]
        stages = [float(values[f'stage.{s}_ms']) for s in STAGES]
        assert all(0 <= ms < float(values['latency_max_ms']) for ms in stages[1:]), values
        assert 0 <= stages[0] < 5000  # DDS transit, between two clocks of this machine
        assert values['hardware'] == hardware_name('cpu')
        # camera_info goes out with every output frame, under the frame's stamp.
        wait_for(lambda: len(infos) >= len(outputs.lists['score']), 10, 'camera_info')
        info_stamps = {m.header.stamp.sec for m in infos}
        assert {m.header.stamp.sec for m in outputs.lists['score']} <= info_stamps
        assert all((m.width, m.height, m.k[0]) == (56, 40, 50.0) for m in infos)

        # A best-effort publisher joins: the node follows, and its frames are scored.
        best_effort = client.publisher('/auto/image', Image, best_effort=True)
        reliability('best_effort')
        send(best_effort, msg, lambda s: outputs.get('score', s))
        # It leaves: back to reliable.
        client.node.destroy_publisher(best_effort)
        reliability('reliable')
        send(reliable, msg, lambda s: outputs.get('score', s))
        assert 'incompatible_qos' not in ' '.join(client.diagnostics(status)[2])
    finally:
        assert node.stop() == 0, node.text()
