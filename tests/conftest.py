import argparse
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
# CI lays the shared data beside the clone; users won't have it and those tests skip.
SHARED_LA = REPO.parent / "shared" / "data" / "LA"
SHARED_HC18 = REPO.parent / "shared" / "data" / "HC18"
SHARED_BUSI = REPO.parent / "shared" / "data" / "BUSI"

from dataloaders.synthetic import make_synthetic_la  # noqa: E402

SMALL_PATCH = ["32", "32", "32"]


def run_script(script: str, *args, cwd, timeout: float = 300) -> subprocess.CompletedProcess:
    """One of the repository's scripts in a fresh interpreter, as a user runs it; output captured as text."""
    return subprocess.run(
        [sys.executable, str(REPO / script), *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory) -> Path:
    """8 training and 2 test cases of 36..44 x 36..44 x 34..40 voxels."""
    root = tmp_path_factory.mktemp("synthetic_LA")
    return make_synthetic_la(root, n_train=8, n_test=2, shape_range=((36, 36, 34), (44, 44, 40)), seed=3)


def write_dicom(path, pixels, pixel_spacing=None, us_region=None):
    """A single-frame ultrasound DICOM of uint16 `pixels`; `pixel_spacing` (row, column) mm as
    PixelSpacing, or `us_region` (delta x, delta y) cm as one calibrated ultrasound region."""
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.6.1"  # ultrasound image storage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    if pixel_spacing is not None:
        ds.PixelSpacing = list(pixel_spacing)
    if us_region is not None:
        region = pydicom.Dataset()
        region.PhysicalUnitsXDirection = region.PhysicalUnitsYDirection = 3  # cm
        region.PhysicalDeltaX, region.PhysicalDeltaY = us_region
        ds.SequenceOfUltrasoundRegions = [region]
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    ds.save_as(path, enforce_file_format=True)


def method_args(method, *flags: str, **overrides) -> argparse.Namespace:
    """A method's training flags as its script parses them, then `overrides` set (unit tests of one step)."""
    import training.loop as training

    args = training.training_parser("", "x", method).parse_args(list(flags))
    for key, value in overrides.items():
        setattr(args, key, value)
    return args


def train_test_predict(script: str, root, model_dir, exp: str, *flags, iterations: int = 2):
    """A training script, then test_LA.py at its final iteration and predict.py on the test split, as a user runs
    them; each must succeed. Returns the run folder."""
    common = ["--root_path", root, "--model_dir", model_dir, "--device", "cpu"]
    trained = run_script(script, *common, *flags, "--exp", exp, "--max_iterations", iterations, cwd=model_dir)
    assert trained.returncode == 0, trained.stderr
    run = Path(model_dir) / exp
    tested = run_script("test_LA.py", *common, "--model", exp, "--iteration", iterations, "--save_nifti", "0",
                        cwd=model_dir)  # fmt: skip
    assert tested.returncode == 0, tested.stderr
    assert (run / f"test_iter_{iterations}" / "metrics.csv").is_file()
    predicted = run_script("predict.py", "--checkpoint", run / f"iter_{iterations}.pth", "--root_path", root,
                           "--split", "test", "--device", "cpu", "--mc_passes", "2", cwd=model_dir)  # fmt: skip
    assert predicted.returncode == 0, predicted.stderr
    return run


def oracle_test_args(monkeypatch, root: Path, model_dir: Path, oracle: dict, *flags: str):
    """test_LA.py's arguments for a run "o" whose network is an oracle: evaluation.testing's sliding windows return
    `oracle[image.tobytes()]` (class probabilities on the network's grid) for each image; a V-Net's weights stand in
    for the checkpoint. `flags` end the command line."""
    import torch

    from evaluation import testing
    from networks.vnet import VNet

    monkeypatch.setattr(testing, "sliding_window_probability", lambda net, image, *a: torch.from_numpy(
        oracle[image.tobytes()]))  # fmt: skip
    (model_dir / "o").mkdir(parents=True)
    torch.save(VNet(dimensions=2).state_dict(), model_dir / "o" / "iter_1.pth")
    return testing.testing_parser().parse_args(
        ["--root_path", str(root), "--model_dir", str(model_dir), "--model", "o", "--iteration", "1",
         "--patch_size", "32", "32", "--device", "cpu", *flags]
    )  # fmt: skip
