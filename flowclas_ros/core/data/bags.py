# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Camera frames in and anomaly outputs out of bag files, with ``rosbags`` (no ROS install).

Reads rosbag2 (sqlite3 and MCAP) and ROS 1 bags, raw ``sensor_msgs/Image`` and
``CompressedImage`` topics, through the same decoders the node uses. Writes rosbag2 bags whose
outputs carry the input's header, as the node publishes them, so a bag evaluated offline and
the same bag replayed through the live node can be compared message by message.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
import io
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image as PILImage

from flowclas_ros.core.data.frames import Frame
from flowclas_ros.core.data.imagemsg import (
    compressed_to_rgb,
    image_fields,
    image_pixels,
    image_to_rgb,
)
from flowclas_ros.core.data.images import (
    image_class,
    list_images,
    list_split,
    read_mask,
    read_rgb,
)
from flowclas_ros.core.errors import DataError, InputError

IMAGE = 'sensor_msgs/msg/Image'
COMPRESSED = 'sensor_msgs/msg/CompressedImage'
STORAGES = ('sqlite3', 'mcap')
# Stamps of sample bags start here, so they look like a recording, not like time zero.
SAMPLE_START_NS = 1_700_000_000 * 10**9


def _rosbags() -> Any:
    try:
        import rosbags  # noqa: F401
    except ImportError as exc:
        raise DataError(
            "bag support needs the 'rosbags' package: pip install 'flowclas_ros[bags]'"
        ) from exc
    from rosbags.highlevel import AnyReader
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    return AnyReader, Writer, StoragePlugin, get_typestore(Stores.ROS2_HUMBLE)


@contextmanager
def open_bag(path: str | Path) -> Iterator[Any]:
    """An open ``AnyReader``; a missing or unreadable bag is a ``DataError``."""
    AnyReader, _, _, typestore = _rosbags()
    from rosbags.highlevel import AnyReaderError

    path = Path(path)
    if not path.exists():
        raise DataError(f'bag {path} does not exist')
    try:
        reader = AnyReader([path], default_typestore=typestore)
        reader.open()
    except (AnyReaderError, OSError, ValueError) as exc:
        raise DataError(f'cannot read bag {path}: {exc}') from exc
    try:
        yield reader
    finally:
        reader.close()


def image_connections(reader: Any, topic: str, path: str | Path = 'bag') -> list[Any]:
    """The connections of an image topic, or a ``DataError`` naming the image topics there are."""
    conns = [c for c in reader.connections if c.topic == topic]
    if not conns or any(c.msgtype not in (IMAGE, COMPRESSED) for c in conns):
        found = sorted({c.topic for c in reader.connections if c.msgtype in (IMAGE, COMPRESSED)})
        what = 'is not an image topic' if conns else 'is not in the bag'
        raise DataError(f'{topic} {what} {path}; image topics: {", ".join(found) or "none"}')
    return conns


@dataclass
class BagMessage:
    """One image message: its header, its bag time and the message (not yet its pixels).

    A message that could not be deserialized has ``msg`` None and its bag time as stamp;
    ``message()`` and ``rgb()`` then raise ``InputError('corrupt_message')``, so it is counted
    like any other bad frame.
    """

    stamp_ns: int
    frame_id: str
    log_ns: int
    msgtype: str
    msg: Any
    error: str = ''

    def message(self) -> Any:
        if self.msg is None:
            raise InputError('corrupt_message', self.error)
        return self.msg

    def rgb(self) -> np.ndarray:
        msg = self.message()
        return image_to_rgb(msg) if self.msgtype == IMAGE else compressed_to_rgb(msg)


def read_images(path: str | Path, topic: str) -> Iterator[BagMessage]:
    """Image messages of ``topic`` in bag order (not yet decoded into pixels)."""
    from rosbags.highlevel import AnyReaderError

    with open_bag(path) as reader:
        conns = image_connections(reader, topic, path)
        for conn, log_ns, raw in reader.messages(connections=conns):
            try:
                msg = reader.deserialize(raw, conn.msgtype)
            except AnyReaderError as exc:
                yield BagMessage(log_ns, '', log_ns, conn.msgtype, None, str(exc))
                continue
            stamp = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
            yield BagMessage(stamp, msg.header.frame_id, log_ns, conn.msgtype, msg)


def bag_topics(path: str | Path) -> dict[str, tuple[str, int]]:
    """``{topic: (msgtype, message count)}`` of a bag."""
    with open_bag(path) as reader:
        out: dict[str, tuple[str, int]] = {}
        for c in reader.connections:
            out[c.topic] = (c.msgtype, out.get(c.topic, ('', 0))[1] + c.msgcount)
        return out


def _ros2_typestore(ros1: Any) -> Any:
    """A ROS 1 bag's types with the ROS 2 Header (no ``seq``): what ``ros1_to_cdr`` must target."""
    from rosbags.typesys import Stores, get_typestore

    store = get_typestore(Stores.EMPTY)
    header = get_typestore(Stores.ROS2_FOXY).fielddefs['std_msgs/msg/Header']
    store.register({**ros1.fielddefs, 'std_msgs/msg/Header': header})
    return store


def read_raw(
    path: str | Path, topics: list[str] | None = None, skipped: dict[str, int] | None = None
) -> Iterator[tuple[str, str, int, bytes]]:
    """``(topic, msgtype, bag time ns, CDR bytes)`` in bag order; ROS 1 data becomes CDR.

    Every message is checked by deserializing it: a replayed corrupt message would only move
    the failure into each subscriber. Those that fail are skipped and counted per topic in
    ``skipped``.
    """
    from rosbags.highlevel import AnyReaderError
    from rosbags.serde import SerdeError

    with open_bag(path) as reader:
        conns = [c for c in reader.connections if topics is None or c.topic in topics]
        ros2 = None if reader.is2 else _ros2_typestore(reader.typestore)
        for conn, log_ns, raw in reader.messages(connections=conns):
            try:
                if ros2 is None:
                    reader.deserialize(raw, conn.msgtype)
                else:
                    raw = bytes(ros2.ros1_to_cdr(raw, conn.msgtype))
            except (AnyReaderError, SerdeError):
                if skipped is not None:
                    skipped[conn.topic] = skipped.get(conn.topic, 0) + 1
                continue
            yield conn.topic, conn.msgtype, log_ns, raw


@dataclass
class BagFrames:
    """A ``FrameSource`` over a bag topic, with ground truth from a folder or a topic.

    Truth from ``masks`` (``<stem>.png``, 0 normal, 1 anomaly, 255 ignore) is matched by stamp
    when every stem is an integer (nanoseconds), otherwise by order (then the class comes from
    the file name, as in a split). Truth from ``mask_topic`` (mono8 label images) is matched by
    header stamp. With ``scores``, ``topic`` holds recorded 32FC1 scores, not images. Frames that
    cannot be decoded are skipped and counted in ``rejected`` by reason.
    """

    path: str | Path
    topic: str
    masks: str | Path | None = None
    mask_topic: str | None = None
    scores: bool = False
    rejected: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._mask_files: list[Path] = []
        self._by_stamp: dict[int, Path | np.ndarray] = {}
        if self.masks is not None:
            self._mask_files = list_images(self.masks)
            if all(p.stem.isdigit() for p in self._mask_files):
                self._by_stamp = {int(p.stem): p for p in self._mask_files}
        if self.mask_topic is not None:
            for m in read_images(self.path, self.mask_topic):
                self._by_stamp[m.stamp_ns] = _labels(m.message())
        if self._mask_files and not self._by_stamp:
            with open_bag(self.path) as reader:
                n = sum(c.msgcount for c in image_connections(reader, self.topic, self.path))
            if n != len(self._mask_files):
                raise DataError(
                    f'{len(self._mask_files)} masks in {self.masks} but {n} frames on '
                    f'{self.topic}; name masks <stamp_ns>.png to match them by stamp'
                )

    def __call__(self) -> Iterator[Frame]:
        self.rejected.clear()
        for i, m in enumerate(read_images(self.path, self.topic)):
            name, cls, truth = str(m.stamp_ns), 'frame', self._by_stamp.get(m.stamp_ns)
            if self._mask_files and not self._by_stamp:
                truth = self._mask_files[i]
                name, cls = truth.stem, image_class(truth)
            try:
                pixels = _scores(m.message()) if self.scores else m.rgb()
            except InputError as exc:
                self.rejected[exc.reason] = self.rejected.get(exc.reason, 0) + 1
                continue
            mask = read_mask(truth, pixels.shape[:2]) if isinstance(truth, Path) else truth
            if mask is not None and mask.shape != pixels.shape[:2]:
                raise DataError(f'frame {name}: mask is {mask.shape}, image {pixels.shape[:2]}')
            header = {'stamp_ns': m.stamp_ns, 'frame_id': m.frame_id, 'log_ns': m.log_ns}
            if self.scores:
                yield Frame(name, cls, None, mask, scores=pixels, **header)
            else:
                yield Frame(name, cls, pixels, mask, **header)


def _labels(msg: Any) -> np.ndarray:
    """A mono8 label image -> ``(H, W)`` uint8 labels."""
    if msg.encoding not in ('mono8', '8UC1'):
        raise DataError(f'mask images must be mono8 labels, got {msg.encoding}')
    return image_pixels(msg)[..., 0].copy()


def _scores(msg: Any) -> np.ndarray:
    """A recorded 32FC1 score image -> native float32 ``(H, W)``."""
    if msg.encoding != '32FC1':
        raise InputError('unknown_encoding', f'recorded scores must be 32FC1, not {msg.encoding}')
    return image_pixels(msg)[..., 0].astype(np.float32)


def _stamp(typestore: Any, ns: int) -> Any:
    return typestore.types['builtin_interfaces/msg/Time'](sec=ns // 10**9, nanosec=ns % 10**9)


class BagWriter:
    """A rosbag2 being written with rosbags; topics are added on first use."""

    def __init__(self, path: str | Path, storage: str = 'sqlite3') -> None:
        _, Writer, StoragePlugin, self.typestore = _rosbags()
        if storage not in STORAGES:
            raise DataError(f'storage must be one of {", ".join(STORAGES)}, not {storage!r}')
        path = Path(path)
        if path.exists():
            raise DataError(f'{path} exists; bags are never overwritten')
        plugin = StoragePlugin.MCAP if storage == 'mcap' else StoragePlugin.SQLITE3
        # Version 8 bags open in every rosbag2 from Humble on.
        self._writer = Writer(path, version=8, storage_plugin=plugin)
        self._writer.open()
        self._connections: dict[str, Any] = {}

    def write_raw(self, topic: str, msgtype: str, log_ns: int, cdr: bytes) -> None:
        """Write one already serialized (CDR) message, e.g. as received by a subscription."""
        conn = self._connections.get(topic)
        if conn is None:
            conn = self._writer.add_connection(topic, msgtype, typestore=self.typestore)
            self._connections[topic] = conn
        self._writer.write(conn, log_ns, cdr)

    def write(self, topic: str, msgtype: str, log_ns: int, **fields: Any) -> None:
        """Write one message built from ``fields`` (``stamp_ns``/``frame_id`` make its header)."""
        types = self.typestore.types
        header = types['std_msgs/msg/Header'](
            stamp=_stamp(self.typestore, fields.pop('stamp_ns')), frame_id=fields.pop('frame_id')
        )
        if 'data' in fields:
            fields['data'] = np.frombuffer(fields['data'], np.uint8)
        msg = types[msgtype](header=header, **fields)
        self.write_raw(topic, msgtype, log_ns, self.typestore.serialize_cdr(msg, msgtype))

    def write_image(
        self,
        topic: str,
        array: np.ndarray,
        encoding: str,
        stamp_ns: int,
        frame_id: str,
        log_ns: int,
    ) -> None:
        fields = image_fields(array, encoding)
        self.write(topic, IMAGE, log_ns, stamp_ns=stamp_ns, frame_id=frame_id, **fields)

    def close(self) -> None:
        self._writer.close()

    def __enter__(self) -> BagWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def write_sample_bag(
    split_dir: str | Path,
    out: str | Path,
    topic: str = '/camera/image_raw',
    truth_topic: str | None = '/camera/truth',
    compressed: bool = False,
    storage: str = 'sqlite3',
    fps: float = 10.0,
    limit: int | None = None,
) -> int:
    """A bag of a split's images (and masks as mono8 labels on ``truth_topic``) at ``fps``.

    Compressed bags carry the original JPEG/PNG bytes, so they decode to the same pixels as the
    folder; raw bags carry rgb8. Returns the number of frames.
    """
    items = list_split(split_dir)[:limit]
    if not items:
        raise DataError(f'no images in {split_dir}/images')
    with BagWriter(out, storage) as writer:
        for i, item in enumerate(items):
            ns = SAMPLE_START_NS + round(i * 1e9 / fps)
            stamp = {'stamp_ns': ns, 'frame_id': 'camera', 'log_ns': ns}
            rgb = read_rgb(item.image)  # the pixels the folder path sees
            if compressed:
                data = item.image.read_bytes()
                with PILImage.open(io.BytesIO(data)) as image:
                    fmt = image.format
                if fmt not in ('JPEG', 'PNG'):
                    buf = io.BytesIO()
                    PILImage.fromarray(rgb).save(buf, 'PNG')
                    data, fmt = buf.getvalue(), 'PNG'
                fields = {'format': fmt.lower(), 'data': data}
                writer.write(f'{topic}/compressed', COMPRESSED, **stamp, **fields)
            else:
                writer.write_image(topic, rgb, 'rgb8', **stamp)
            if truth_topic is not None and item.mask is not None:
                writer.write_image(
                    truth_topic, read_mask(item.mask, rgb.shape[:2]), 'mono8', **stamp
                )
    return len(items)


def decoded_frames(
    path: str | Path, topic: str, every: int = 1, rejected: dict[str, int] | None = None
) -> Iterator[tuple[int, np.ndarray]]:
    """``(stamp_ns, rgb)`` of every ``every``-th frame of ``topic``, for training or calibrating.

    Frames that cannot be decoded are skipped and counted by reason in ``rejected``.
    """
    if every < 1:
        raise DataError('--every must be 1 or more')
    for i, m in enumerate(read_images(path, topic)):
        if i % every:
            continue
        try:
            yield m.stamp_ns, m.rgb()
        except InputError as exc:
            if rejected is not None:
                rejected[exc.reason] = rejected.get(exc.reason, 0) + 1


def extract_frames(
    path: str | Path, topic: str, out_dir: str | Path, every: int = 1, limit: int | None = None
) -> tuple[int, int]:
    """Every ``every``-th frame of ``topic`` as ``<stamp_ns>.png``: (written, undecodable)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written, rejected = 0, {}
    for stamp_ns, rgb in decoded_frames(path, topic, every, rejected):
        if limit is not None and written >= limit:
            break
        PILImage.fromarray(rgb).save(out_dir / f'{stamp_ns}.png')
        written += 1
    if not written:
        raise DataError(f'no decodable frames on {topic} in {path}')
    return written, sum(rejected.values())
