"""Every data mistake ends in a DataError naming the file and the fix (and, from a script, one line and exit 2)."""

import pickle
import re
import shutil

import h5py
import numpy as np
import pytest
import torch
from conftest import SMALL_PATCH
from conftest import run_script as run
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dataloaders.checks import check_dataset
from dataloaders.h5_cases import case_path, read_case
from evaluation.testing import load_network
from networks.vnet import VNet
from utils.errors import DataError


@pytest.fixture
def root(synthetic_root, tmp_path):
    """A private copy of the synthetic dataset to damage."""
    return shutil.copytree(synthetic_root, tmp_path / "LA")


def first_case(root, split="train"):
    return (root / f"{split}.list").read_text().split()[0]


def rewrite(path, **datasets):
    path.unlink()
    with h5py.File(path, "w") as h5:
        for key, value in datasets.items():
            h5.create_dataset(key, data=value)


def expect(root, match, **kwargs):
    with pytest.raises(DataError, match=match):
        check_dataset(root, **kwargs)


def test_missing_root_list_and_case(root, tmp_path):
    expect(tmp_path / "nowhere", "dataset folder not found")
    (root / "test.list").unlink()
    expect(root, "test.list: list file not found")
    shutil.copy(root / "train.list", root / "test.list")
    (root / "test.list").write_text("")
    shutil.rmtree(case_path(root, first_case(root)).parent)
    expect(root, f"{first_case(root)}.*case file not found")


def test_unreadable_and_truncated_h5(root):
    path = case_path(root, first_case(root))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=f"{path}"):
        read_case(path)  # the header may survive the cut; the voxels cannot
    path.write_bytes(b"not an hdf5 file at all")
    expect(root, "not a readable HDF5 file")


@pytest.mark.parametrize("missing", ["image", "label"])
def test_missing_dataset(root, missing):
    path = case_path(root, first_case(root))
    present = {"image": np.zeros((40, 40, 40), np.float32), "label": np.zeros((40, 40, 40), np.uint8)}
    present.pop(missing)
    rewrite(path, **present)
    expect(root, f"no '{missing}' dataset")


def test_shapes_differ(root):
    rewrite(
        case_path(root, first_case(root)),
        image=np.zeros((40, 40, 40), np.float32),
        label=np.zeros((40, 40, 38), np.uint8),
    )
    expect(root, r"image shape \(40, 40, 40\) differs from label shape \(40, 40, 38\)")


def test_label_values_outside_the_classes(root):
    label = np.zeros((40, 40, 40), np.uint8)
    label[5:9, 5:9, 5:9] = 255
    rewrite(case_path(root, first_case(root)), image=np.zeros((40, 40, 40), np.float32), label=label)
    check_dataset(root)  # headers look fine ...
    expect(root, "label values 0..255 fall outside 0..1", full=True)  # ... every voxel does not


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_image(root, bad):
    image = np.zeros((40, 40, 40), np.float32)
    image[1, 2, 3] = bad
    rewrite(case_path(root, first_case(root)), image=image, label=np.zeros((40, 40, 40), np.uint8))
    expect(root, "1 NaN/Inf voxels", full=True)


def test_volume_smaller_than_the_patch_is_padded_with_one_note(root, capsys):
    report = check_dataset(root, patch_size=(40, 40, 40))
    out = capsys.readouterr().out
    assert out.count("note:") == 1 and "zero-padded" in out
    assert report.smaller_than_patch


def test_duplicate_ids_and_leakage(root):
    ids = (root / "train.list").read_text().split()
    (root / "train.list").write_text("\n".join([*ids, ids[0]]))
    expect(root, f"IDs listed twice: {ids[0]}")
    (root / "train.list").write_text("\n".join(ids))
    (root / "test.list").write_text(ids[1] + "\n")
    said = f"{root / 'test.list'}: 1 ID is also in the training set, read from {root / 'train.list'} ({ids[1]});"
    expect(root, re.escape(said) + ".*leaks")


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--labelnum", "99"], "--labelnum 99: train.list has 8 cases"),
        (["--labeled_bs", "4"], "--labeled_bs 4 must be in 1..3"),
        (["--patch_size", "40", "32", "32"], "multiple of 16"),
        (["--mc_passes_per_forward", "3"], "--mc_passes_per_forward 3 must divide --mc_passes 8"),
        (["--root_path", "nowhere"], "dataset folder not found"),
    ],
)
def test_scripts_print_one_line_exit_2_and_write_nothing(synthetic_root, tmp_path, flags, message):
    result = run(
        "train_uamt_unlabel.py",
        "--root_path",
        synthetic_root,
        "--patch_size",
        *SMALL_PATCH,
        "--max_iterations",
        1,
        *flags,
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and message in result.stderr
    assert not (tmp_path / "model").exists()


def test_bad_case_stops_training_before_anything_is_written(root, tmp_path):
    label = np.full((40, 40, 40), 255, np.uint8)
    rewrite(case_path(root, first_case(root)), image=np.zeros((40, 40, 40), np.float32), label=label)
    result = run(
        "train_supervised.py", "--root_path", root, "--patch_size", *SMALL_PATCH, "--labelnum", 4, cwd=tmp_path
    )
    assert result.returncode == 2 and "outside 0..1" in result.stderr and "0/255" in result.stderr
    assert not (tmp_path / "model").exists()


# --- checkpoints --------------------------------------------------------------------------------------------------


def test_checkpoint_of_another_class_count_or_architecture(tmp_path):
    path = tmp_path / "iter_1.pth"
    torch.save(VNet(n_classes=2).state_dict(), path)
    load_network(path, "cpu")  # the real thing loads
    state = VNet(n_classes=2).state_dict()
    state["out_conv.weight"] = torch.zeros(3, 8, 1, 1, 1)  # class count 3, other width
    torch.save(state, path)
    with pytest.raises(DataError, match="of another shape"):
        load_network(path, "cpu")
    state = {k.replace("block_one.", "encoder.first."): v for k, v in VNet().state_dict().items()}
    torch.save(state, path)
    with pytest.raises(DataError, match=r"missing keys \['block_one.*unexpected \['encoder.first"):
        load_network(path, "cpu")


class Payload:
    def __reduce__(self):
        return (print, ("this ran from a checkpoint",))


def test_checkpoint_with_code_is_refused_without_running_it(tmp_path, capsys):
    path = tmp_path / "iter_1.pth"
    path.write_bytes(pickle.dumps({"out_conv.weight": Payload()}))
    with pytest.raises(DataError, match="refused"):
        load_network(path, "cpu")
    assert "this ran" not in capsys.readouterr().out


# --- fuzzing the case reader --------------------------------------------------------------------------------------

DTYPES = st.sampled_from(["float32", "float64", "uint8", "int16", "bool", "complex64", "S3"])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    keys=st.lists(st.sampled_from(["image", "label", "img", "mask", "group"]), max_size=3, unique=True),
    shapes=st.lists(st.lists(st.integers(0, 4), min_size=0, max_size=4), min_size=3, max_size=3),
    dtype=DTYPES,
    seed=st.integers(0, 2**16),
    garbage=st.one_of(st.none(), st.binary(max_size=64)),
    cut=st.floats(0.0, 1.0),
)
def test_fuzzed_case_files_end_in_data_error_or_a_valid_case(tmp_path, keys, shapes, dtype, seed, garbage, cut):
    path = tmp_path / "case.h5"
    rng = np.random.default_rng(seed)
    with h5py.File(path, "w") as h5:
        for key, shape in zip(keys, shapes):
            if key == "group":
                h5.create_group(key)
                continue
            values = rng.integers(-2, 4, size=shape) if dtype != "S3" else np.full(shape, b"abc")
            h5.create_dataset(key, data=np.asarray(values).astype(dtype))
    if garbage is not None:
        data = path.read_bytes()
        at = int(len(data) * cut)
        path.write_bytes(data[:at] + garbage)
    try:
        image, label = read_case(path)
    except DataError:
        return
    assert image.dtype == np.float32 and label.dtype == np.uint8 and image.shape == label.shape
    assert image.ndim == 3 and np.isfinite(image).all() and label.max() <= 1
