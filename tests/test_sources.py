"""Case sources: NIfTI folders, 2D image folders (PNG/JPEG/DICOM), layout detection, geometry written back."""

import nibabel as nib
import numpy as np
import pytest
import torch
from conftest import write_dicom
from PIL import Image

from dataloaders.checks import check_dataset
from dataloaders.sources import ImageFolderSource, LASource, NiftiSource, open_source
from utils.errors import DataError


def zscored(x):
    x = x.astype(np.float64)
    return (x - x.mean()) / x.std()


@pytest.fixture
def nifti_root(tmp_path):
    """Decathlon layout: 3 training images (one named the nnU-Net way), 2 labels (K = 3), 1 test image + label."""
    rng = np.random.default_rng(0)
    affine = np.diag([0.8, 0.8, 2.5, 1.0])
    affine[:3, 3] = [10, -20, 5]
    for folder in ("imagesTr", "labelsTr", "imagesTs", "labelsTs"):
        (tmp_path / folder).mkdir()
    cases = {}
    for case_id, image_name, labelled in [("c1", "c1", True), ("c2", "c2_0000", True), ("c3", "c3", False)]:
        image = rng.normal(100, 20, (20, 18, 10)).astype(np.float32)
        nib.save(nib.Nifti1Image(image, affine), tmp_path / "imagesTr" / f"{image_name}.nii.gz")
        label = rng.integers(0, 3, (20, 18, 10)).astype(np.uint8)
        if labelled:
            nib.save(nib.Nifti1Image(label, affine), tmp_path / "labelsTr" / f"{case_id}.nii.gz")
        cases[case_id] = (image, label if labelled else None)
    image = rng.normal(size=(16, 16, 8)).astype(np.float32)
    nib.save(nib.Nifti1Image(image, affine), tmp_path / "imagesTs" / "t1.nii.gz")
    nib.save(nib.Nifti1Image(np.zeros((16, 16, 8), np.uint8), affine), tmp_path / "labelsTs" / "t1.nii.gz")
    return tmp_path, cases, affine


def test_nifti_cases_lists_labels_and_geometry(nifti_root, tmp_path):
    root, cases, affine = nifti_root
    source = open_source(root, num_classes=3)
    assert isinstance(source, NiftiSource) and source.dimensions == 3
    assert source.list_ids("train") == ["c1", "c2", "c3"] and source.list_ids("test") == ["t1"]
    for case_id, (image, label) in cases.items():
        read_image, read_label = source.read(case_id)
        np.testing.assert_allclose(read_image, zscored(image), atol=1e-5)
        assert source.has_label(case_id) == (label is not None)
        if label is None:
            assert read_label is None
        else:
            np.testing.assert_array_equal(read_label, label)
    assert source.spacing("c1") == pytest.approx((0.8, 0.8, 2.5))
    out = tmp_path / "out"
    out.mkdir()
    prediction = cases["c1"][1]
    (path,) = source.write_outputs("c1", out, {"pred": prediction})
    written = nib.load(path)
    np.testing.assert_allclose(written.affine, affine, rtol=1e-6)  # the input's geometry (stored as float32)
    np.testing.assert_array_equal(np.asarray(written.dataobj), prediction)
    raw = open_source(root, num_classes=3, normalization="none").read("c2")[0]
    np.testing.assert_array_equal(raw, cases["c2"][0])  # --normalization none: as stored
    # Lists, when present, choose the cases.
    (root / "train.list").write_text("c3\nc1\n")
    assert open_source(root, num_classes=3).list_ids("train") == ["c3", "c1"]


def test_nifti_bad_data_is_one_line_naming_the_file(nifti_root):
    root, _, affine = nifti_root
    source = open_source(root, num_classes=2)
    with pytest.raises(DataError, match=r"c1.nii.gz: has label value 2 \(present: 0, 1, 2\).*pass --num_classes 3 if"):
        source.read("c1")
    nib.save(nib.Nifti1Image(np.zeros((20, 18, 9), np.uint8), affine), root / "labelsTr" / "c1.nii.gz")
    with pytest.raises(DataError, match=r"labelsTr/c1.nii.gz: label shape \(20, 18, 9\) differs from image shape"):
        source.read("c1")
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4, 2), np.float32), affine), root / "imagesTr" / "c3.nii.gz")
    with pytest.raises(DataError, match="c3.nii.gz: shape .*one 3D volume per file"):
        source.read("c3")
    (root / "train.list").write_text("c1\nnope\n")
    with pytest.raises(DataError, match="no image for the listed ID nope"):
        source.list_ids("train")


def save_png(path, array):
    Image.fromarray(array).save(path)


@pytest.fixture
def echo_root(tmp_path):
    """Echo-like frames of 70 x 100 (rows x columns): grey PNG, an RGB PNG, a JPEG without mask; 0/255 masks."""
    rng = np.random.default_rng(1)
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    frames = {}
    for case_id in ("f1", "f2", "f3"):
        frame = rng.integers(0, 255, (70, 100)).astype(np.uint8)
        mask = np.zeros((70, 100), np.uint8)
        mask[20:50, 30:80] = 255
        frames[case_id] = (frame, mask)
    save_png(tmp_path / "images" / "f1.png", frames["f1"][0])
    save_png(tmp_path / "images" / "f2.png", np.stack([frames["f2"][0]] * 3, -1))  # RGB with equal channels
    Image.fromarray(frames["f3"][0]).save(tmp_path / "images" / "f3.jpg", quality=100)
    save_png(tmp_path / "masks" / "f1.png", frames["f1"][1])
    save_png(tmp_path / "masks" / "f2.png", frames["f2"][1])
    return tmp_path, frames


def test_image_folder_reads_frames_and_masks(echo_root):
    root, frames = echo_root
    source = open_source(root)
    assert isinstance(source, ImageFolderSource) and source.dimensions == 2
    assert source.list_ids("train") == ["f1", "f2", "f3"] and source.list_ids("test") == []
    for case_id in ("f1", "f2"):
        image, label = source.read(case_id)
        np.testing.assert_allclose(image, zscored(frames[case_id][0]), atol=1e-5)
        np.testing.assert_array_equal(label, frames[case_id][1] // 255)  # 0/255 read as 0/1
    image, label = source.read("f3")  # JPEG, no mask: unlabelled
    assert label is None and image.shape == (70, 100) and not source.has_label("f3")
    # A JPEG mask is refused rather than ignored (which would make the case unlabelled without a word).
    Image.fromarray(frames["f1"][1]).save(root / "masks" / "f3.jpg")
    with pytest.raises(DataError, match="f3.jpg: JPEG compression changes label values; save the mask as PNG"):
        source.read("f3")
    # 0/255 is binary only for two classes: with three it is a mistake, named.
    with pytest.raises(DataError, match=r"f1.png: has label value 255 .*0/255 is read as 0/1 only for 2 classes"):
        open_source(root, num_classes=3).read("f1")


@pytest.mark.parametrize("foreground", [1, 255])
def test_a_stray_label_value_is_named_as_unexpected_not_as_a_class_count(echo_root, foreground):
    """A 2-class mask (0/1 or 0/255) with one stray pixel of 5: the message names the value and what a 2-class mask
    holds; it must not tell the user to train 6 classes."""
    root, frames = echo_root
    mask = np.where(frames["f1"][1] > 0, foreground, 0).astype(np.uint8)
    mask[0, 0] = 5
    save_png(root / "masks" / "f1.png", mask)
    with pytest.raises(DataError) as error:
        open_source(root).read("f1")
    message = str(error.value)
    assert message.startswith(f"{root / 'masks' / 'f1.png'}: has label value 5")
    assert f"(present: 0, {foreground}, 5)" in message or f"(present: 0, 5, {foreground})" in message
    assert "a 2-class mask holds 0/1 (or 0/255)" in message and "check the mask" in message
    assert "--num_classes 6" not in message and "pass --num_classes if it really has more classes" in message


def test_center_crop_and_resize_are_undone_when_writing(echo_root, tmp_path):
    root, frames = echo_root
    source = open_source(root, center_crop=(60, 60), resize=(32, 32))
    image, label = source.read("f1")
    assert image.shape == label.shape == (32, 32)
    # The crop is centred: rows 5..65, columns 20..80 of the 70 x 100 frame.
    cropped = frames["f1"][1][5:65, 20:80] // 255
    expected = np.asarray(Image.fromarray(cropped).resize((32, 32), Image.Resampling.NEAREST))
    np.testing.assert_array_equal(label, expected)
    out = tmp_path / "out"
    out.mkdir()
    (path,) = source.write_outputs("f1", out, {"pred": label})
    written = np.asarray(Image.open(path))
    assert written.shape == (70, 100) and set(np.unique(written)) <= {0, 255}
    assert not written[:5].any() and not written[:, :20].any() and not written[:, 80:].any()  # outside the crop
    agreement = np.mean((written[5:65, 20:80] > 0) == (frames["f1"][1][5:65, 20:80] > 0))
    assert agreement > 0.97  # nearest-neighbour down and up again: only the edges may move
    (path,) = source.write_outputs("f1", out, {"uncertainty": np.ones((32, 32), np.float32)})
    assert np.asarray(Image.open(path)).dtype == np.float32


def test_a_test_list_alone_leaves_every_other_image_for_training(echo_root):
    """The README's 2D hint (write a test.list to test) with no train.list: training takes the images not in
    test.list, and a real overlap (a train.list naming a test case) is refused naming both lists read."""
    root, _ = echo_root
    (root / "test.list").write_text("f2\n")
    source = open_source(root)
    assert source.list_ids("train") == ["f1", "f3"] and source.list_ids("test") == ["f2"]
    assert check_dataset(source).ids == {"train": ["f1", "f3"], "test": ["f2"]}
    assert source.list_origin("train") == f"{root / 'images'}/ (no train.list: every image not in test.list)"
    (root / "train.list").write_text("f1\nf2\n")
    with pytest.raises(DataError) as error:
        check_dataset(source)
    assert str(error.value).startswith(
        f"{root / 'test.list'}: 1 ID is also in the training set, read from {root / 'train.list'} (f2); "
    )


def test_a_test_list_alone_leaves_every_other_nifti_volume_for_training(nifti_root):
    nifti, _, _ = nifti_root
    (nifti / "test.list").write_text("c2\n")  # a training image named as test: imagesTr/ minus test.list
    source = open_source(nifti, num_classes=3)
    assert source.list_ids("train") == ["c1", "c3"] and source.list_ids("test") == ["c2"]
    assert "imagesTr/ (no train.list" in source.list_origin("train")


def test_dicom_frames(tmp_path):
    pytest.importorskip("pydicom")
    (tmp_path / "images").mkdir()
    pixels = np.random.default_rng(2).integers(0, 4000, (40, 48)).astype(np.uint16)
    write_dicom(tmp_path / "images" / "d1.dcm", pixels)
    image, label = open_source(tmp_path).read("d1")
    np.testing.assert_allclose(image, zscored(pixels), atol=1e-5)
    assert label is None


def test_layout_detection_and_misplaced_options(tmp_path, synthetic_root):
    assert isinstance(open_source(synthetic_root), LASource)
    with pytest.raises(DataError, match="--center_crop, --resize and --letterbox apply to 2D images"):
        open_source(synthetic_root, resize=(32, 32))
    with pytest.raises(DataError, match="dataset folder not found"):
        open_source(tmp_path / "nowhere")


def letterbox_root(tmp_path, frames):
    """A 2D folder of `frames`: ID -> (uint8 frame, 0/1 mask)."""
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    for case_id, (frame, mask) in frames.items():
        save_png(tmp_path / "images" / f"{case_id}.png", frame)
        save_png(tmp_path / "masks" / f"{case_id}.png", mask * 255)
    return tmp_path


def test_letterbox_scales_the_longest_side_keeps_the_aspect_pads_and_maps_back(tmp_path):
    # A 4 x 8 frame (rows x columns): left half raw 0, right half 100; a lesion in rows 1-2, columns 2-4.
    frame = np.zeros((4, 8), np.uint8)
    frame[:, 4:] = 100
    mask = np.zeros((4, 8), np.uint8)
    mask[1:3, 2:5] = 1
    root = letterbox_root(tmp_path, {"wide": (frame, mask)})
    source = open_source(root, letterbox=16)
    image, label = source.read("wide")
    # x2 to 8 x 16, centred in 16 x 16: rows 4..11 hold the frame, rows 0..3 and 12..15 are padding.
    assert image.shape == label.shape == (16, 16)
    np.testing.assert_array_equal(label[4:12], np.kron(mask, np.ones((2, 2), np.uint8)))  # nearest: each pixel 2 x 2
    assert not label[:4].any() and not label[12:].any()
    # The padding is raw 0 normalised with the frame's own statistics: the value of the frame's raw-0 pixels
    # (columns 0..5 of the x2 frame stay exactly 0 under bilinear scaling), and the frame alone is z-scored.
    np.testing.assert_allclose(image[:4], image[4, 0])
    np.testing.assert_allclose(image[12:], image[4, 0])
    assert abs(image[4:12].mean()) < 1e-5 and image[4:12].std() == pytest.approx(1.0, abs=1e-4)
    np.testing.assert_array_equal(source.read("wide")[0][4:12, :6] == image[4, 0], True)
    # Without normalisation the padding is 0 and the frame its bilinear x2.
    raw, _ = open_source(root, letterbox=16, normalization="none").read("wide")
    assert not raw[:4].any() and not raw[12:].any() and raw[4:12, :6].max() == 0 and raw[4:12, 10:].min() == 100
    # Back on the frame's grid: the mask exactly (x2 then /2 by nearest neighbour), as written to disk too.
    np.testing.assert_array_equal(source.map_to_original("wide", label), mask)
    np.testing.assert_array_equal(source.original_label("wide", label), mask)
    out = tmp_path / "out"
    out.mkdir()
    (path,) = source.write_outputs("wide", out, {"pred": label})
    np.testing.assert_array_equal(np.asarray(Image.open(path)), mask * 255)
    # Probabilities: the padding is cut off, the frame's part scaled back (a constant stays that constant).
    probability = torch.zeros(2, 16, 16)
    probability[0], probability[1, 4:12] = 1.0, 0.25
    probability[0, 4:12] = 0.75
    restored = source.probability_to_original("wide", probability)
    assert restored.shape == (2, 4, 8)
    np.testing.assert_allclose(restored[1].numpy(), 0.25, atol=1e-6)


def test_letterbox_of_a_tall_frame_rounds_the_short_side_and_centres_it(tmp_path):
    rng = np.random.default_rng(0)
    frame = rng.integers(1, 255, (8, 4)).astype(np.uint8)
    mask = np.zeros((8, 4), np.uint8)
    mask[2:6, 1:3] = 1
    source = open_source(letterbox_root(tmp_path, {"tall": (frame, mask)}), letterbox=10)
    # x1.25: 10 x round(5.0) = 10 x 5, columns (10 - 5) // 2 = 2 .. 6.
    assert source.letterbox_box((8, 4)) == (slice(0, 10), slice(2, 7))
    image, label = source.read("tall")
    assert image.shape == label.shape == (10, 10)
    assert not label[:, :2].any() and not label[:, 7:].any() and label[:, 2:7].any()
    assert source.map_to_original("tall", label).shape == (8, 4)
    assert source.map_to_original("tall", np.ones((10, 10), np.float32)).shape == (8, 4)


def test_letterbox_refuses_resize_a_bad_side_and_volumes(tmp_path, synthetic_root):
    root = letterbox_root(tmp_path, {"a": (np.ones((4, 6), np.uint8), np.zeros((4, 6), np.uint8))})
    with pytest.raises(DataError, match="--resize and --letterbox"):
        open_source(root, resize=(8, 8), letterbox=8)
    with pytest.raises(DataError, match="--letterbox 0"):
        open_source(root, letterbox=0)
    with pytest.raises(DataError, match="--letterbox apply to 2D images"):
        open_source(synthetic_root, letterbox=32)
