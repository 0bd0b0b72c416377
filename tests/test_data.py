from collections import Counter

import numpy as np
import pytest
from scipy import ndimage

from dataloaders.augmentations import TrainTransform, pad_to_patch, random_rot_flip
from dataloaders.dataset import SegmentationDataset
from dataloaders.sampler import TwoStreamBatchSampler
from dataloaders.synthetic import make_synthetic_la, synthetic_case


def _epochs(sampler, n):
    return [list(sampler) for _ in range(n)]


def test_every_batch_has_labeled_bs_labelled_items_and_each_labelled_index_once_per_epoch():
    labeled, unlabeled = range(16), range(16, 80)
    sampler = TwoStreamBatchSampler(labeled, unlabeled, batch_size=4, labeled_bs=2, seed=0)
    assert len(sampler) == 8
    seen_unlabeled_orders = []
    for epoch in _epochs(sampler, 3):
        assert len(epoch) == 8
        indices = [[i for i, _ in batch] for batch in epoch]
        for batch in indices:
            assert len(batch) == 4
            assert all(i < 16 for i in batch[:2]) and all(i >= 16 for i in batch[2:])
        assert sorted(i for batch in indices for i in batch[:2]) == list(labeled)
        epoch_unlabeled = [i for batch in indices for i in batch[2:]]
        assert len(epoch_unlabeled) == 16 and len(set(epoch_unlabeled)) == 16  # none twice in an epoch
        seen_unlabeled_orders.append(tuple(epoch_unlabeled))
    assert len(set(seen_unlabeled_orders)) == 3  # a fresh shuffle each epoch


def test_short_unlabelled_stream_chains_shuffles_and_stays_balanced():
    sampler = TwoStreamBatchSampler(range(8), range(8, 11), batch_size=4, labeled_bs=2, seed=1)
    unlabeled = [i for batch in next(iter([list(sampler)])) for i, _ in batch[2:]]
    assert len(unlabeled) == 8
    assert max(Counter(unlabeled).values()) - min(Counter(unlabeled).values()) <= 1


def test_supervised_sampler_is_a_shuffled_pass_of_full_labelled_batches():
    sampler = TwoStreamBatchSampler(range(16), [], batch_size=4, labeled_bs=4, seed=0)
    epoch = list(sampler)
    assert len(epoch) == 4
    assert sorted(i for batch in epoch for i, _ in batch) == list(range(16))


def test_sampler_is_reproducible_from_its_seed_and_gives_fresh_augmentation_seeds():
    a = _epochs(TwoStreamBatchSampler(range(6), range(6, 12), 4, 2, seed=5), 2)
    b = _epochs(TwoStreamBatchSampler(range(6), range(6, 12), 4, 2, seed=5), 2)
    assert a == b
    seeds = [s for epoch in a for batch in epoch for _, s in batch]
    assert len(set(seeds)) == len(seeds)


@pytest.mark.parametrize(
    ("labeled_bs", "batch_size", "unlabeled"), [(0, 4, range(4, 8)), (5, 4, range(4, 8)), (2, 4, [])]
)
def test_sampler_rejects_impossible_batches(labeled_bs, batch_size, unlabeled):
    with pytest.raises(ValueError):
        TwoStreamBatchSampler(range(4), unlabeled, batch_size, labeled_bs, seed=0)


def _reflections(volume):
    """rot90 by k then a flip: only the 4 reflections of the axial plane (flip_0 rot_(k+2) == flip_1 rot_k)."""
    found = []
    for k in range(4):
        for axis in (0, 1):
            candidate = np.flip(np.rot90(volume, k, axes=(0, 1)), axis=axis)
            if not any(c.shape == candidate.shape and np.array_equal(c, candidate) for c in found):
                found.append(candidate)
    return found


def test_rot_flip_is_a_reflection_and_all_four_occur():
    image = np.arange(6 * 5 * 3, dtype=np.float32).reshape(6, 5, 3)
    reflections = _reflections(image)
    assert len(reflections) == 4
    seen = set()
    for seed in range(100):
        out, label = random_rot_flip(image, image.astype(np.int64), np.random.default_rng(seed))
        matches = [i for i, c in enumerate(reflections) if c.shape == out.shape and np.array_equal(c, out)]
        assert len(matches) == 1
        assert np.array_equal(label, out.astype(np.int64))  # the label moved with the image
        seen.add(matches[0])
    assert seen == {0, 1, 2, 3}


def test_random_crop_keeps_image_and_label_aligned():
    image = np.arange(40 * 36 * 30, dtype=np.float32).reshape(40, 36, 30)
    label = (image.astype(np.int64) * 7 % 5).astype(np.uint8)
    transform = TrainTransform((32, 32, 16))
    for seed in range(20):
        out_image, out_label = transform(image, label, np.random.default_rng(seed))
        assert out_image.shape == out_label.shape == (32, 32, 16)
        assert np.array_equal(out_label, (out_image.astype(np.int64) * 7 % 5).astype(np.uint8))
        # The crop is a contiguous block of one reflection of the volume.
        blocks = []
        for volume in _reflections(image):
            corner = np.argwhere(volume == out_image[0, 0, 0])[0]
            blocks.append(volume[tuple(slice(c, c + p) for c, p in zip(corner, (32, 32, 16)))])
        assert any(b.shape == out_image.shape and np.array_equal(b, out_image) for b in blocks)


def test_2d_transform_is_a_reflection_of_the_plane_then_a_crop_and_keeps_label_aligned():
    image = np.arange(40 * 36, dtype=np.float32).reshape(40, 36)
    label = (image.astype(np.int64) * 7 % 3).astype(np.uint8)  # 3 classes, a function of the pixel value
    # The 4 reflections of the plane, written out: transpose, anti-transpose, vertical and horizontal flips.
    reflections = [image.T, image[::-1, ::-1].T, image[::-1], image[:, ::-1]]
    transform = TrainTransform((32, 16))
    seen = set()
    for seed in range(40):
        out_image, out_label = transform(image, label, np.random.default_rng(seed))
        assert out_image.shape == out_label.shape == (32, 16)
        assert np.array_equal(out_label, (out_image.astype(np.int64) * 7 % 3).astype(np.uint8))
        matches = []
        for i, volume in enumerate(reflections):
            corner = np.argwhere(volume == out_image[0, 0])[0]
            block = volume[corner[0] : corner[0] + 32, corner[1] : corner[1] + 16]
            if block.shape == out_image.shape and np.array_equal(block, out_image):
                matches.append(i)
        assert len(matches) == 1  # a contiguous block of exactly one reflection
        seen.add(matches[0])
    assert seen == {0, 1, 2, 3}


def test_2d_image_smaller_than_the_patch_is_padded_by_the_release_formula():
    image = np.ones((20, 50), dtype=np.float32)
    padded, _ = pad_to_patch(image, image.astype(np.uint8), (32, 32))
    assert padded.shape == (38, 50)  # (32 - 20) // 2 + 3 = 9 on both ends of the short side
    out, out_label = TrainTransform((32, 32))(image, image.astype(np.uint8), np.random.default_rng(0))
    assert out.shape == out_label.shape == (32, 32) and np.array_equal(out, out_label)


def test_transform_refuses_a_patch_of_another_dimensionality():
    with pytest.raises(ValueError, match="3D image cannot be cropped to the 2D patch"):
        TrainTransform((32, 32))(np.zeros((40, 40, 40)), np.zeros((40, 40, 40)), np.random.default_rng(0))


def test_synthetic_three_classes_are_nested_shells_of_the_two_class_blob():
    shape = (40, 36, 30)
    image_2, label_2 = synthetic_case(shape, np.random.default_rng(7))
    image_3, label_3 = synthetic_case(shape, np.random.default_rng(7), num_classes=3)
    assert set(np.unique(label_3)) == {0, 1, 2}
    assert np.array_equal(label_3 > 0, label_2 == 1)  # the same random draws: the same blob
    core, shell = label_3 == 2, label_3 == 1
    assert not (ndimage.binary_dilation(core) & (label_3 == 0)).any()  # the core never touches background
    # Only the core is brighter (then the whole volume is z-scored again): outside the core the two images are the
    # same noisy volume up to an affine map, and the core stands out more above the outer shell.
    assert image_3[core].mean() - image_3[shell].mean() > image_2[core].mean() - image_2[shell].mean() + 0.3
    outside = ~core
    assert np.corrcoef(image_3[outside], image_2[outside])[0, 1] == pytest.approx(1.0, abs=1e-6)


def test_synthetic_dataset_labels_fit_the_class_count(tmp_path):
    root = make_synthetic_la(tmp_path, n_train=2, n_test=1, shape_range=((20, 20, 16), (24, 24, 18)), num_classes=4)
    ids = (root / "train.list").read_text().split()
    dataset = SegmentationDataset(root, ids, num_classes=4)
    assert max(int(label.max()) for _, label in dataset.cases) == 3
    with pytest.raises(Exception, match="fall outside 0..1"):
        SegmentationDataset(root, ids)  # the default 2 classes refuses labels 2 and 3


def test_padding_follows_the_release_formula_when_a_side_is_not_larger_than_the_patch():
    image = np.ones((40, 20, 50), dtype=np.float32)
    padded, label = pad_to_patch(image, image.astype(np.uint8), (32, 32, 32))
    # (32 - 20) // 2 + 3 = 9 on both ends of the short side; the others need none.
    assert padded.shape == label.shape == (40, 38, 50)
    assert padded[:, :9].sum() == 0 and padded[:, 9:29].all()
    same, _ = pad_to_patch(image[:, :, :], image, (32, 16, 32))
    assert same.shape == image.shape  # every side already larger: untouched
    out, _ = TrainTransform((32, 32, 32))(image, image.astype(np.uint8), np.random.default_rng(0))
    assert out.shape == (32, 32, 32)


def test_dataset_items_are_tensors_of_the_patch(synthetic_root):
    ids = (synthetic_root / "train.list").read_text().split()
    dataset = SegmentationDataset(synthetic_root, ids[:2], TrainTransform((32, 32, 32)))
    item = dataset[(1, 123)]
    assert item["image"].shape == (1, 32, 32, 32) and item["label"].shape == (32, 32, 32)
    assert str(item["label"].dtype) == "torch.int64"
    again = dataset[(1, 123)]
    assert (item["image"] == again["image"]).all()  # the seed fixes the augmentation
    plain = SegmentationDataset(synthetic_root, ids[:1])[0]
    assert plain["image"].shape[1:] == dataset.cases[0][0].shape


def test_foreground_oversampling_puts_a_lesion_pixel_in_every_crop_and_off_draws_the_release_crops():
    """--oversample_foreground 1: every crop of a frame with a one-pixel lesion holds that pixel (a uniform 16 x 16 crop
    of a 64 x 64 frame holds it ~6 % of the time); 0: the crops are those of the release's transform, draw for draw."""
    image = np.arange(64 * 64, dtype=np.float32).reshape(64, 64)
    label = np.zeros((64, 64), np.uint8)
    label[60, 3] = 1  # near a corner: the patch must shift inside the frame
    always, never = TrainTransform((16, 16), "none", foreground=1.0), TrainTransform((16, 16), "none")
    hits = [always(image, label, np.random.default_rng(s))[1].sum() for s in range(50)]
    assert hits == [1] * 50
    uniform = [never(image, label, np.random.default_rng(s))[1].sum() for s in range(200)]
    assert sum(uniform) < 40  # ~ (16 / 63) ** 2 of 200 = 13
    # At 0 (the default) the draws are the release's: rot_flip then the crop, the same generator.
    for s in range(5):
        a = TrainTransform((16, 16), "rot_flip", foreground=0.0)(image, label, np.random.default_rng(s))
        rng = np.random.default_rng(s)
        rotated = random_rot_flip(image, label, rng)
        starts = [int(rng.integers(0, side - 16)) for side in rotated[0].shape]
        np.testing.assert_array_equal(a[0], rotated[0][starts[0] : starts[0] + 16, starts[1] : starts[1] + 16])
    # A frame without foreground (an unlabelled item, a clean frame) is cropped uniformly even at 1.
    empty = np.zeros_like(label)
    crop = always(image, empty, np.random.default_rng(0))[0]
    assert crop.shape == (16, 16)
