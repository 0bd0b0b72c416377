from collections import Counter

import numpy as np
import pytest

from dataloaders.la_heart import LAHeart, TrainTransform, TwoStreamBatchSampler, pad_to_patch, random_rot_flip


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
    dataset = LAHeart(synthetic_root, ids[:2], TrainTransform((32, 32, 32)))
    item = dataset[(1, 123)]
    assert item["image"].shape == (1, 32, 32, 32) and item["label"].shape == (32, 32, 32)
    assert str(item["label"].dtype) == "torch.int64"
    again = dataset[(1, 123)]
    assert (item["image"] == again["image"]).all()  # the seed fixes the augmentation
    plain = LAHeart(synthetic_root, ids[:1])[0]
    assert plain["image"].shape[1:] == dataset.cases[0][0].shape
