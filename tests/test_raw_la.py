"""Raw LA conversion (dataloaders/raw_la.py, prepare_la_raw.py) on small generated nrrd files.

Expected values are computed here from the definitions (the reference's crop rule, a z-score over the whole volume,
the documented per-case seeding), never by calling the function under test.
"""

import zlib

import h5py
import nrrd
import numpy as np
import pytest
from conftest import REPO, run_script

from dataloaders.h5_cases import CASE_FILE, CASES_FOLDER, read_case, read_list
from dataloaders.raw_la import convert_case, convert_dataset, crop_box
from utils.errors import DataError

SPACING = (0.625, 0.625, 2.5)
SHAPE = (96, 96, 40)
SIZE = (32, 32, 16)  # small output size, so the crop is not clipped by these small volumes
IDS = ["CASE_A", "CASE_B", "CASE_C", "CASE_D"]
MARGIN_RANGES = [(10, 20), (10, 20), (5, 10)]  # [low, high) per axis, as np.random.randint in the reference


def blob(shape, centre, radii):
    grid = np.meshgrid(*[np.arange(s) for s in shape], indexing="ij")
    return sum(((g - c) / r) ** 2 for g, c, r in zip(grid, centre, radii)) <= 1


def write_case(folder, image, mask, spacing=SPACING, label_header=None):
    folder.mkdir(parents=True, exist_ok=True)
    header = {"space": "left-posterior-superior", "space directions": np.diag(spacing)}
    nrrd.write(str(folder / "lgemri.nrrd"), image, header)
    nrrd.write(str(folder / "laendo.nrrd"), mask, header if label_header is None else label_header)


def make_case(folder, seed, shape=SHAPE, centre=None):
    """An int16 MRI-like volume and a 0/255 ellipsoid mask of about 10 x 12 x 6 voxels; returns (image, mask)."""
    rng = np.random.default_rng(seed)
    centre = centre or tuple(s // 2 + int(rng.integers(-3, 4)) for s in shape)
    mask = blob(shape, centre, (5, 6, 3)).astype(np.uint8) * 255
    image = (rng.normal(100, 20, shape) + 0.5 * mask).astype(np.int16)
    write_case(folder, image, mask)
    return image, mask


def expected_box(mask, size, seed, case_id):
    """The reference's box, with margins drawn as documented: a generator seeded by [seed, crc32(ID)], two draws per
    axis (low side, then high side), from [10, 20) in x and y and [5, 10) in z."""
    rng = np.random.default_rng([seed, zlib.crc32(case_id.encode())])
    box = []
    for axis, (low, high) in enumerate(MARGIN_RANGES):
        where = np.nonzero(mask.any(axis=tuple(a for a in range(3) if a != axis)))[0]
        first, last = where[0], where[-1]
        pad = max(size[axis] - (last - first), 0) // 2
        start = max(first - rng.integers(low, high) - pad, 0)
        stop = min(last + rng.integers(low, high) + pad, mask.shape[axis])
        box.append(slice(int(start), int(stop)))
    return box


def read_h5(path):
    with h5py.File(path, "r") as h5:
        return h5["image"][()], h5["label"][()], dict(h5.attrs)


@pytest.fixture
def raw(tmp_path):
    """Four raw cases; returns (folder, {ID: (image, mask)})."""
    folder = tmp_path / "raw"
    return folder, {case_id: make_case(folder / case_id, seed) for seed, case_id in enumerate(IDS)}


# ---------------------------------------------------------------------------------------------------------------
# The crop box


@pytest.mark.parametrize("seed", range(20))
def test_box_holds_the_mask_and_the_minimum_size(seed):
    rng = np.random.default_rng(seed)
    shape = (160, 160, 100)
    radii = rng.integers(2, 30, size=3)
    centre = [int(rng.integers(60, 100)) for _ in range(3)]
    mask = blob(shape, centre, radii)
    box = crop_box(mask, (112, 112, 80), np.random.default_rng(seed))
    assert mask[tuple(box)].sum() == mask.sum()  # the whole mask inside
    for axis, window in enumerate(box):
        assert 0 <= window.start < window.stop <= shape[axis]
        clipped = window.start == 0 or window.stop == shape[axis]
        if not clipped:  # the volume allows it: at least the output size
            assert window.stop - window.start >= (112, 112, 80)[axis]


def test_box_is_clipped_to_the_volume_at_its_borders():
    mask = np.zeros((50, 50, 20), bool)
    mask[0:5, 45:50, 0:20] = True  # touches x = 0, y = 49, and both z ends
    box = crop_box(mask, (112, 112, 80), np.random.default_rng(0))
    assert box == (slice(0, 50), slice(0, 50), slice(0, 20))


def test_box_margins_lie_in_the_reference_ranges():
    mask = blob((200, 200, 120), (100, 100, 60), (20, 25, 10))  # extents 40, 50, 20: all below the output size
    for seed in range(50):
        box = crop_box(mask, (112, 112, 80), np.random.default_rng(seed))
        for axis, ((first, last), (low, high)) in enumerate(zip([(80, 120), (75, 125), (50, 70)], MARGIN_RANGES)):
            pad = ((112, 112, 80)[axis] - (last - first)) // 2
            assert low <= first - pad - box[axis].start < high
            assert low <= box[axis].stop - last - pad < high


# ---------------------------------------------------------------------------------------------------------------
# One case


def test_case_is_the_zscored_volume_cropped_in_x_and_y(raw, tmp_path):
    folder, cases = raw
    image, mask = cases["CASE_A"]
    seed = 7
    rng = np.random.default_rng([seed, zlib.crc32(b"CASE_A")])
    shape = convert_case(folder / "CASE_A", tmp_path / "out", rng, SIZE)

    box = expected_box(mask, SIZE, seed, "CASE_A")
    # The reference slices [minx:maxx, miny:maxy]: z is computed but never applied.
    window = (box[0], box[1], slice(None))
    normalised = (image - image.astype(np.float64).mean()) / image.astype(np.float64).std()
    out_image, out_label, attrs = read_h5(tmp_path / "out" / CASE_FILE)
    assert shape == out_image.shape == (box[0].stop - box[0].start, box[1].stop - box[1].start, SHAPE[2])
    assert box[0].stop - box[0].start < SHAPE[0] and box[1].stop - box[1].start < SHAPE[1]  # a real crop
    assert out_image.dtype == np.float32
    np.testing.assert_allclose(out_image, normalised[window], rtol=1e-6, atol=1e-6)
    assert out_label.dtype == np.uint8 and set(np.unique(out_label)) == {0, 1}
    np.testing.assert_array_equal(out_label, (mask[window] == 255).astype(np.uint8))
    np.testing.assert_allclose(attrs["spacing"], SPACING)
    np.testing.assert_array_equal(attrs["crop_start"], [box[0].start, box[1].start, 0])


def test_spacings_header_and_oblique_directions(tmp_path):
    image = np.random.default_rng(0).normal(size=(30, 30, 10)).astype(np.float32)
    mask = blob(image.shape, (15, 15, 5), (4, 4, 2)).astype(np.uint8)
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
    # 'spacings' instead of 'space directions'
    nrrd.write(str(tmp_path / "a" / "lgemri.nrrd"), image, {"spacings": [0.7, 0.8, 1.5]})
    nrrd.write(str(tmp_path / "a" / "laendo.nrrd"), mask * 255)
    convert_case(tmp_path / "a", tmp_path / "out_a", np.random.default_rng(0))
    np.testing.assert_allclose(read_h5(tmp_path / "out_a" / CASE_FILE)[2]["spacing"], [0.7, 0.8, 1.5])
    # A rotated grid: spacing is each direction vector's length.
    rotation = np.array([[0.6, 0.8, 0.0], [-0.8, 0.6, 0.0], [0.0, 0.0, 1.0]])
    nrrd.write(str(tmp_path / "b" / "lgemri.nrrd"), image, {"space directions": np.diag([0.5, 0.6, 2.0]) @ rotation})
    nrrd.write(str(tmp_path / "b" / "laendo.nrrd"), mask * 255)
    convert_case(tmp_path / "b", tmp_path / "out_b", np.random.default_rng(0))
    np.testing.assert_allclose(read_h5(tmp_path / "out_b" / CASE_FILE)[2]["spacing"], [0.5, 0.6, 2.0])


def test_a_0_1_mask_gives_the_same_case_as_0_255(raw, tmp_path):
    folder, cases = raw
    image, mask = cases["CASE_B"]
    write_case(tmp_path / "binary" / "CASE_B", image, (mask // 255).astype(np.uint8))
    convert_case(folder / "CASE_B", tmp_path / "o255", np.random.default_rng(3), SIZE)
    convert_case(tmp_path / "binary" / "CASE_B", tmp_path / "o01", np.random.default_rng(3), SIZE)
    for a, b in zip(read_h5(tmp_path / "o255" / CASE_FILE)[:2], read_h5(tmp_path / "o01" / CASE_FILE)[:2]):
        np.testing.assert_array_equal(a, b)


def test_the_written_case_is_readable_by_the_training_reader(raw, tmp_path):
    folder, _ = raw
    convert_case(folder / "CASE_C", tmp_path / "out", np.random.default_rng(0), SIZE)
    image, label = read_case(tmp_path / "out" / CASE_FILE)
    assert image.dtype == np.float32 and label.dtype == np.uint8 and image.shape == label.shape


# ---------------------------------------------------------------------------------------------------------------
# Seeds and subsets


def test_same_seed_same_output_other_seed_other_margins(raw, tmp_path):
    folder, _ = raw
    outputs = {}
    for name, seed in [("first", 5), ("again", 5), ("other", 6)]:
        convert_dataset(folder, tmp_path / name, seed=seed, test_count=1, output_size=SIZE)
        outputs[name] = {i: read_h5(tmp_path / name / CASES_FOLDER / i / CASE_FILE) for i in IDS}
    for case_id in IDS:
        first, again = outputs["first"][case_id], outputs["again"][case_id]
        np.testing.assert_array_equal(first[0], again[0])
        np.testing.assert_array_equal(first[1], again[1])
        np.testing.assert_array_equal(first[2]["crop_start"], again[2]["crop_start"])
    # 4 cases x 4 margins in x/y from 10 values each: the same crops for another seed would be a 1e-16 coincidence.
    windows = {
        name: [(tuple(o[2]["crop_start"]), o[0].shape) for o in outputs[name].values()] for name in ("first", "other")
    }
    assert windows["first"] != windows["other"]
    assert (tmp_path / "first" / "test.list").read_text() == (tmp_path / "again" / "test.list").read_text()


def test_a_case_does_not_depend_on_the_other_cases(raw, tmp_path):
    folder, _ = raw
    convert_dataset(folder, tmp_path / "all", seed=11, test_count=1, output_size=SIZE)
    convert_dataset(folder, tmp_path / "one", seed=11, ids=["CASE_C"], test_count=0, output_size=SIZE)
    convert_dataset(folder, tmp_path / "reversed", seed=11, ids=IDS[::-1], test_count=0, output_size=SIZE)
    alone = read_h5(tmp_path / "one" / CASES_FOLDER / "CASE_C" / CASE_FILE)
    for name in ("all", "reversed"):
        other = read_h5(tmp_path / name / CASES_FOLDER / "CASE_C" / CASE_FILE)
        np.testing.assert_array_equal(alone[0], other[0])
        np.testing.assert_array_equal(alone[1], other[1])
        np.testing.assert_array_equal(alone[2]["crop_start"], other[2]["crop_start"])
    assert read_list(tmp_path / "one", "train") == ["CASE_C"] and read_list(tmp_path / "one", "test") == []


def test_seeded_split_and_a_given_test_list(raw, tmp_path):
    folder, _ = raw
    train, test = convert_dataset(folder, tmp_path / "split", seed=2, test_count=2, output_size=SIZE)
    expected_test = sorted(np.random.default_rng(2).permutation(sorted(IDS))[:2].tolist())
    assert test == expected_test == read_list(tmp_path / "split", "test")
    assert train == sorted(set(IDS) - set(test)) == read_list(tmp_path / "split", "train")

    (tmp_path / "published.list").write_text("CASE_D\nCASE_A\n")
    train, test = convert_dataset(
        folder, tmp_path / "given", test_list=tmp_path / "published.list", ids=["CASE_A", "CASE_B"], output_size=SIZE
    )
    assert (test, train) == (["CASE_A"], ["CASE_B"])  # the list's IDs among those converted, in its order
    for text, words in [
        ("CASE_A\nCASE_A\n", "CASE_A is listed twice"),
        ("CASE_X\n", "IDs not in the raw folder: CASE_X"),
    ]:
        (tmp_path / "bad.list").write_text(text)
        with pytest.raises(DataError, match=f"bad.list: {words}"):
            convert_dataset(folder, tmp_path / "bad", test_list=tmp_path / "bad.list")
    (folder / "test.list").write_text("CASE_B\n")  # a raw folder's own test.list is used by default
    assert convert_dataset(folder, tmp_path / "own", output_size=SIZE) == (["CASE_A", "CASE_C", "CASE_D"], ["CASE_B"])


# ---------------------------------------------------------------------------------------------------------------
# Bad input: one line naming the file and the fix


def expect_error(case_dir, out, *words):
    with pytest.raises(DataError) as error:
        convert_case(case_dir, out, np.random.default_rng(0), SIZE)
    message = str(error.value)
    assert "\n" not in message
    for word in words:
        assert word in message, (word, message)


def test_missing_image(raw, tmp_path):
    folder, _ = raw
    (folder / "CASE_A" / "lgemri.nrrd").unlink()
    expect_error(folder / "CASE_A", tmp_path / "o", str(folder / "CASE_A" / "lgemri.nrrd"), "not found", "needs")
    with pytest.raises(DataError, match="lgemri.nrrd: file not found.*--ids"):  # checked before any case is written
        convert_dataset(folder, tmp_path / "all", test_count=1)
    assert not (tmp_path / "all").exists()


def test_missing_mask(raw, tmp_path):
    folder, _ = raw
    (folder / "CASE_A" / "laendo.nrrd").unlink()
    expect_error(folder / "CASE_A", tmp_path / "o", str(folder / "CASE_A" / "laendo.nrrd"), "not found", "laendo.nrrd")


def test_shape_mismatch(raw, tmp_path):
    folder, cases = raw
    nrrd.write(str(folder / "CASE_A" / "laendo.nrrd"), cases["CASE_A"][1][:, :, :-1])
    expect_error(folder / "CASE_A", tmp_path / "o", "laendo.nrrd", "differs", "same grid")


def test_empty_mask(raw, tmp_path):
    folder, cases = raw
    nrrd.write(str(folder / "CASE_A" / "laendo.nrrd"), np.zeros_like(cases["CASE_A"][1]))
    expect_error(folder / "CASE_A", tmp_path / "o", "laendo.nrrd", "empty mask", "leave the case out")


def test_mask_values_other_than_0_255(raw, tmp_path):
    folder, cases = raw
    nrrd.write(str(folder / "CASE_A" / "laendo.nrrd"), cases["CASE_A"][1] // 2)  # 0/127
    expect_error(folder / "CASE_A", tmp_path / "o", "laendo.nrrd", "127", "store the atrium as 255 (or 1)")
    mixed = cases["CASE_A"][1].copy()
    mixed[0, 0, 0] = 1  # 0, 1 and 255 together
    nrrd.write(str(folder / "CASE_A" / "laendo.nrrd"), mixed)
    expect_error(folder / "CASE_A", tmp_path / "o", "laendo.nrrd", "both 1 and 255")


def test_missing_spacing(raw, tmp_path):
    folder, cases = raw
    nrrd.write(str(folder / "CASE_A" / "lgemri.nrrd"), cases["CASE_A"][0])
    expect_error(folder / "CASE_A", tmp_path / "o", "lgemri.nrrd", "no voxel spacing", "space directions")


def test_unreadable_nrrd(raw, tmp_path):
    folder, _ = raw
    (folder / "CASE_A" / "lgemri.nrrd").write_bytes(b"not an nrrd file")
    expect_error(folder / "CASE_A", tmp_path / "o", "lgemri.nrrd", "not a readable NRRD", "re-download")


# ---------------------------------------------------------------------------------------------------------------
# The script


def test_script_end_to_end(tmp_path):
    # Full default output size (112 x 112 x 80) on 200 x 200 x 20 volumes: x and y cropped, z kept whole.
    raw, out = tmp_path / "raw", tmp_path / "LA"
    cases = {i: make_case(raw / i, seed, shape=(200, 200, 20)) for seed, i in enumerate(IDS[:3])}
    result = run_script("prepare_la_raw.py", "--raw_path", raw, "--out", out, "--seed", 4, "--test_count", 1, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert "wrote 3 cases" in result.stdout
    test = read_list(out, "test")
    assert len(test) == 1 and read_list(out, "train") == sorted(set(IDS[:3]) - set(test))
    for case_id, (image, mask) in cases.items():
        path = out / CASES_FOLDER / case_id / CASE_FILE
        out_image, out_label = read_case(path)
        box = expected_box(mask, (112, 112, 80), 4, case_id)
        assert out_image.shape == (box[0].stop - box[0].start, box[1].stop - box[1].start, 20)
        assert out_image.shape[0] < 200 and out_image.shape[1] < 200
        assert out_label.sum() == (mask == 255).sum()
        normalised = (image - image.astype(np.float64).mean()) / image.astype(np.float64).std()
        np.testing.assert_allclose(out_image, normalised[box[0], box[1]], rtol=1e-6, atol=1e-6)
        with h5py.File(path) as h5:
            np.testing.assert_allclose(h5.attrs["spacing"], SPACING)


def test_script_bad_input_is_one_line_exit_2(raw, tmp_path):
    folder, _ = raw
    (folder / "CASE_B" / "laendo.nrrd").unlink()
    result = run_script("prepare_la_raw.py", "--raw_path", folder, "--out", tmp_path / "LA", cwd=REPO)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "laendo.nrrd: file not found" in result.stderr and "Traceback" not in result.stderr
