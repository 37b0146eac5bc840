# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""flowclas-make-bag: a bag of a split's images (and masks) for trying the bag tools and node.

From a split folder (``images/`` + optional ``masks/``), or with ``--synthetic`` from the
procedural surface data the demo uses, so it works from the repository alone.
"""

from __future__ import annotations

import argparse
import tempfile

from flowclas_ros.cli.common import run_tool


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog='flowclas-make-bag', description=__doc__)
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument('--data', help='split folder with images/ (and masks/)')
    source.add_argument('--synthetic', action='store_true', help='generated surface images')
    p.add_argument('--out', required=True, help='bag to create (a new directory)')
    p.add_argument('--topic', default='/camera/image_raw', help='image topic')
    p.add_argument('--truth-topic', default='/camera/truth', help="masks as mono8 labels; '' off")
    p.add_argument(
        '--compressed', action='store_true', help='sensor_msgs/CompressedImage on TOPIC/compressed'
    )
    p.add_argument('--storage', choices=('sqlite3', 'mcap'), default='sqlite3')
    p.add_argument('--fps', type=float, default=10.0, help='frame rate of the stamps')
    p.add_argument('--limit', type=int, help='at most this many frames')
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)

    def body() -> int:
        from flowclas_ros.core.data.bags import write_sample_bag

        def make(split: str) -> int:
            return write_sample_bag(
                split,
                args.out,
                args.topic,
                args.truth_topic or None,
                args.compressed,
                args.storage,
                args.fps,
                args.limit,
            )

        if args.synthetic:
            from flowclas_ros.core.data.synthetic import make_surface_dataset

            with tempfile.TemporaryDirectory() as folder:
                n = make(str(make_surface_dataset(folder) / 'test'))
        else:
            n = make(args.data)
        print(f'wrote {n} frames to {args.out}')
        return 0

    return run_tool('flowclas-make-bag', body)


if __name__ == '__main__':
    raise SystemExit(main())
