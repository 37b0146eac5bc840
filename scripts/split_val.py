# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""Split a labelled split into ``tune`` and ``report`` halves by a fixed rule (not a test).

Usage: python scripts/split_val.py --data SPLIT --out DIR

Settings are chosen on ``DIR/tune`` and results are reported on ``DIR/report`` only, so no
number in docs/ was fitted to the images it is measured on. Within each class (file-name
prefix before the first ``_``) the images are ordered by the SHA-1 of their stem and dealt
alternately to tune and report: the halves are stratified, and adding images to the split
leaves the assignment of the others mostly unchanged. The halves are symbolic links to the
original files, so nothing is copied and nothing existing is overwritten.
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path
import sys

from flowclas_ros.core.data.images import image_class, list_split


def halves(stems: list[str]) -> tuple[list[str], list[str]]:
    """``(tune, report)`` stems: per class, by hash order, alternately."""
    by_class: dict[str, list[str]] = {}
    for stem in stems:
        by_class.setdefault(image_class(stem), []).append(stem)
    tune, report = [], []
    for members in by_class.values():
        members.sort(key=lambda s: hashlib.sha1(s.encode()).hexdigest())
        tune += members[0::2]
        report += members[1::2]
    return sorted(tune), sorted(report)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--data', required=True, help='split with images/ and masks/')
    p.add_argument('--out', required=True, help='new folder for tune/ and report/')
    args = p.parse_args()
    out = Path(args.out)
    if out.exists():
        sys.exit(f'split_val.py: {out} exists; choose a new folder')
    items = {item.image.stem: item for item in list_split(args.data)}
    for name, stems in zip(('tune', 'report'), halves(list(items)), strict=True):
        for stem in stems:
            item = items[stem]
            for kind, path in (('images', item.image), ('masks', item.mask)):
                if path is None:
                    continue
                link = out / name / kind / path.name
                link.parent.mkdir(parents=True, exist_ok=True)
                link.symlink_to(path.resolve())
        print(f'{out / name}: {len(stems)} images')


if __name__ == '__main__':
    main()
