# Copyright 2026 The flowclas_ros Authors
# SPDX-License-Identifier: Apache-2.0
import numpy as np
from PIL import Image
import pytest
import torch

from flowclas_ros.core.data.images import list_split, read_mask, read_rgb, to_batch
from flowclas_ros.core.data.outliers import PseudoOutliers
from flowclas_ros.core.errors import ConfigError, DataError


def test_grey_images_become_rgb_and_batches_are_resized(tmp_path):
    Image.fromarray(np.full((30, 20), 200, np.uint8)).save(tmp_path / 'g.png')
    rgb = read_rgb(tmp_path / 'g.png')
    assert rgb.shape == (30, 20, 3)
    batch = to_batch([rgb], (16, 8))
    assert batch.shape == (1, 3, 16, 8)
    torch.testing.assert_close(batch, torch.full_like(batch, 200 / 255))


def test_corrupt_image_is_a_data_error(tmp_path):
    (tmp_path / 'x.jpg').write_bytes(b'\xff\xd8\xff not a jpeg')
    with pytest.raises(DataError, match='x.jpg'):
        read_rgb(tmp_path / 'x.jpg')


def test_mask_values_and_size_are_checked(tmp_path):
    Image.fromarray(np.array([[0, 1], [255, 1]], np.uint8)).save(tmp_path / 'ok.png')
    assert read_mask(tmp_path / 'ok.png', (2, 2)).tolist() == [[0, 1], [255, 1]]
    with pytest.raises(DataError, match='2x2 but its image is 3x2'):
        read_mask(tmp_path / 'ok.png', (2, 3))
    Image.fromarray(np.array([[0, 7]], np.uint8)).save(tmp_path / 'bad.png')
    with pytest.raises(DataError, match=r'values \[7\]'):
        read_mask(tmp_path / 'bad.png', (1, 2))


def test_split_needs_a_mask_for_every_image(tmp_path):
    (tmp_path / 'images').mkdir()
    (tmp_path / 'masks').mkdir()
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / 'images' / 'a_1.jpg')
    with pytest.raises(DataError, match='no mask'):
        list_split(tmp_path)
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / 'masks' / 'a_1.png')
    assert [item.mask.name for item in list_split(tmp_path)] == ['a_1.png']


@pytest.mark.parametrize('with_folder', [False, True])
def test_pasted_labels_cover_exactly_the_changed_pixels(tmp_path, with_folder):
    outliers = None
    if with_folder:
        (tmp_path / 'images').mkdir()
        Image.fromarray(np.full((20, 20, 3), 255, np.uint8)).save(tmp_path / 'images' / 'o.png')
        outliers = tmp_path
    paster = PseudoOutliers(outliers, (48, 48))
    images = torch.full((6, 3, 48, 48), 0.5)
    gen = torch.Generator().manual_seed(0)
    mixed, labels = paster.paste(images, gen)
    assert labels.shape == (6, 48, 48)
    assert set(labels.unique().tolist()) <= {0, 1}
    changed = (mixed - images).abs().amax(1) > 1e-6
    # Labelled pixels changed (unless the fill happened to equal the surface); unlabelled
    # pixels changed at most by the feathered edge next to a labelled one.
    edge = torch.nn.functional.max_pool2d(labels[:, None].float(), 3, 1, 1)[:, 0] > 0
    assert not (changed & ~edge).any()
    assert labels.sum() > 0
    # Same seed, same result: training is reproducible.
    again, labels2 = paster.paste(images, torch.Generator().manual_seed(0))
    torch.testing.assert_close(again, mixed)
    assert torch.equal(labels, labels2)


def test_paste_probability_leaves_the_other_images_clean():
    images = torch.full((40, 3, 32, 32), 0.5)
    mixed, labels = PseudoOutliers(None, (32, 32), probability=0.5).paste(
        images, torch.Generator().manual_seed(0)
    )
    pasted = labels.flatten(1).bool().any(1)
    assert 8 <= int(pasted.sum()) <= 32
    torch.testing.assert_close(mixed[~pasted], images[~pasted], rtol=0, atol=0)
    always = PseudoOutliers(None, (32, 32)).paste(images, torch.Generator().manual_seed(0))[1]
    assert int(always.flatten(1).bool().any(1).sum()) >= 36  # a blob may come out empty


def test_ground_placement_puts_half_the_objects_low_and_smaller_towards_the_horizon():
    images = torch.full((200, 3, 64, 64), 0.5)
    gen = torch.Generator().manual_seed(0)
    paster = PseudoOutliers(None, (64, 64), max_objects=1, scales=(0.25,), placement='ground')
    labels = paster.paste(images, gen)[1].bool()
    rows = torch.arange(64)[None, :, None].expand_as(labels)
    bottoms = [int(rows[k][labels[k]].max()) for k in range(200) if labels[k].any()]
    # A ground object's bottom edge lies in the lower 45 % of the frame; the others anywhere.
    low = sum(b >= 0.55 * 64 - 1 for b in bottoms) / len(bottoms)
    assert 0.55 <= low <= 0.9
    anywhere = PseudoOutliers(None, (64, 64), max_objects=1, scales=(0.25,))
    spread = anywhere.paste(images, torch.Generator().manual_seed(0))[1].bool()
    assert labels.sum() < spread.sum()  # ground objects shrink with distance
    with pytest.raises(ConfigError, match='placement'):
        PseudoOutliers(None, (64, 64), placement='sky')
    with pytest.raises(ConfigError, match='scales'):
        PseudoOutliers(None, (64, 64), scales=(0.0,))
