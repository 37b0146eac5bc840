# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""flowclas-calibrate: refit a model's score calibration on normal images of a new site.

Training fits the calibration (the 0..1 score scale, the false-positive-rate thresholds and
the NFA rule's fitted null) on its held-out normal images, and with ``threshold_on:
outlines`` on pseudo-outliers pasted into them. Scenes differ from place to place:
frames of the robot's own camera with nothing unusual in them (a folder or a bag) give
thresholds that mean what they say there. Only ``config.json`` changes; the trained weights do not.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
import json
from pathlib import Path

import numpy as np

from flowclas_ros.cli.common import add_model_args, load_model_arg, run_tool
from flowclas_ros.core.jsonio import write_json


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog='flowclas-calibrate', description=__doc__)
    add_model_args(p, 'model directory to update')
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument('--images', help='folder of normal images')
    source.add_argument('--bag', help='a bag of normal camera frames')
    p.add_argument('--topic', help='image topic in --bag')
    p.add_argument('--every', type=int, default=1, help='--bag: keep every N-th frame')
    return p


def _frames(args: argparse.Namespace, rejected: dict[str, int]) -> Iterator[np.ndarray]:
    from flowclas_ros.core.errors import DataError

    if args.images:
        from flowclas_ros.core.data.images import list_images, read_rgb

        for path in list_images(args.images):
            yield read_rgb(path)
        return
    from flowclas_ros.core.data.bags import decoded_frames

    if not args.topic:
        raise DataError('--bag needs --topic (the camera image topic)')
    for _, rgb in decoded_frames(args.bag, args.topic, args.every, rejected):
        yield rgb


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)

    def body() -> int:
        import torch

        from flowclas_ros.core.config import THRESHOLD_ON
        from flowclas_ros.core.errors import ConfigError, DataError
        from flowclas_ros.core.flowclas.model import CONFIG_FILE
        from flowclas_ros.core.flowclas.scoring import fit_calibration, upsample
        from flowclas_ros.core.flowclas.train.outliers import model_paster
        from flowclas_ros.core.inference import Detector

        model = load_model_arg(args)
        detector = Detector(model)
        tc = model.config.train
        # A model whose 0.5 outlines anomalies (threshold_on: outlines) keeps that meaning:
        # each frame is also scored with procedural pseudo-outliers pasted at the model's
        # scales and placement (an --outliers folder used in training is not recorded).
        if tc.threshold_on not in THRESHOLD_ON:
            raise ConfigError(
                f'model config train.threshold_on is {tc.threshold_on!r}; '
                f'choose from {THRESHOLD_ON}'
            )
        paster = None
        if tc.threshold_on == 'outlines':
            gen = torch.Generator().manual_seed(tc.seed + 1)
            paster = model_paster(model.config)
        rejected: dict[str, int] = {}
        maps, norms, outlines = [], [], []
        with torch.no_grad():
            for rgb in _frames(args, rejected):
                x = detector.preprocess(rgb)
                scores, latent = detector.engine(x)
                if not torch.isfinite(scores).all():
                    raise DataError('the model produced NaN or inf scores on a normal frame')
                maps.append(scores[0].double().cpu().numpy())
                norms.append(detector.host_norms(latent))
                if paster is not None:
                    mixed, labels = paster.paste(x.cpu(), gen, probability=1.0)
                    pasted = upsample(detector.engine(mixed.to(x.device))[0], x.shape[-2:])
                    if not torch.isfinite(pasted).all():
                        raise DataError('the model produced NaN or inf scores on a pasted frame')
                    outlines.append((pasted[0].double().cpu().numpy(), labels[0].numpy()))
        if not maps:
            raise DataError('no normal frames to calibrate on')
        old = model.config.calibration
        try:
            model.config.calibration = fit_calibration(
                maps, norms, outlines, tc.mask_peak_fraction
            )
        except ValueError as exc:  # e.g. frames so uniform that the scores do not vary
            raise DataError(f'cannot calibrate on these frames: {exc}') from None
        # The stored backbone path stays as trained; --weights only overrides it for this run.
        config = json.loads((Path(args.model) / CONFIG_FILE).read_text())
        config['calibration'] = model.config.to_dict()['calibration']
        write_json(Path(args.model) / CONFIG_FILE, config)
        new = model.config.calibration
        print(
            f'calibrated on {len(maps)} frames: centre {old.center:.4f} -> {new.center:.4f}, '
            f'width {old.width:.4f} -> {new.width:.4f}'
            + (f'; skipped undecodable frames: {rejected}' if rejected else '')
        )
        return 0

    return run_tool('flowclas-calibrate', body)


if __name__ == '__main__':
    raise SystemExit(main())
