"""predict.py for echo frames: areas of each structure in areas.csv (pixels, and mm² from a DICOM's pixel spacing),
the overlay's colours and legend, --class_names. The network is replaced by an oracle that returns a known mask, so
the counts can be checked exactly."""

import csv
import json

import numpy as np
import pytest
import torch
from PIL import Image

import evaluation.predicting as predicting
from dataloaders.sources import dicom_pixel_spacing, open_folder
from evaluation.prediction import class_colour, overlay_panel, structure_sizes
from networks.vnet import VNet
from utils.errors import DataError

pytest.importorskip("pydicom")
from conftest import write_dicom  # noqa: E402

NAMES = ["LV cavity", "myocardium", "left atrium"]


def known_mask(shape):
    """Three rectangles of classes 1, 2, 3 with known areas."""
    mask = np.zeros(shape, np.uint8)
    mask[5:25, 10:30] = 1  # 400 pixels
    mask[30:40, 10:40] = 2  # 300
    mask[42:49, 50:70] = 3  # 140
    return mask


def test_dicom_pixel_spacing_from_pixel_spacing_or_an_ultrasound_region(tmp_path):
    pixels = np.random.default_rng(0).integers(0, 255, (20, 30))
    write_dicom(tmp_path / "a.dcm", pixels, pixel_spacing=(0.3, 0.25))
    write_dicom(tmp_path / "b.dcm", pixels, us_region=(0.02, 0.05))  # x (columns) 0.2 mm, y (rows) 0.5 mm
    write_dicom(tmp_path / "c.dcm", pixels)
    Image.fromarray(pixels.astype(np.uint8)).save(tmp_path / "d.png")
    assert dicom_pixel_spacing(tmp_path / "a.dcm") == pytest.approx((0.3, 0.25))
    assert dicom_pixel_spacing(tmp_path / "b.dcm") == pytest.approx((0.5, 0.2))
    source = open_folder(tmp_path, num_classes=4, resize=(16, 16))
    assert source.pixel_spacing("a") == pytest.approx((0.3, 0.25))  # the stored frame's, whatever --resize is
    assert source.pixel_spacing("c") is None and source.pixel_spacing("d") is None


def test_structure_sizes_count_each_class_and_scale_by_the_spacing():
    mask = known_mask((50, 80))
    assert structure_sizes(mask, 4, None) == ([400, 300, 140], None)
    pixels, areas = structure_sizes(mask, 4, (0.3, 0.25))
    assert pixels == [400, 300, 140] and areas == pytest.approx([30.0, 22.5, 10.5])
    assert structure_sizes(np.zeros((4, 4), np.uint8), 3, (1.0, 2.0)) == ([0, 0], [0.0, 0.0])


def test_overlay_colours_each_structure_and_adds_a_legend_below_frame_sized_panels():
    rng = np.random.default_rng(1)
    image = rng.normal(size=(50, 80)).astype(np.float32)
    mask = known_mask((50, 80))
    panel = np.asarray(overlay_panel(image, mask, np.zeros((50, 80), np.float32), np.log(4), NAMES))
    assert panel.shape[1] == 3 * 80 and panel.shape[0] > 50  # three frame-sized panels, the legend under them
    coloured = panel[:50, 80:160]
    for c, (rows, cols) in enumerate([(slice(5, 25), slice(10, 30)), (slice(30, 40), slice(10, 40))], 1):
        edge = coloured[rows.start, cols.start + 3]  # on the region's outline: the class colour itself
        assert tuple(edge) == class_colour(c)
    assert len({class_colour(c) for c in (1, 2, 3)}) == 3
    legend = panel[50:].reshape(-1, 3)
    for c in (1, 2, 3):  # each structure's swatch is drawn in the legend
        assert (legend == class_colour(c)).all(-1).sum() >= 81


@pytest.fixture
def frames(tmp_path):
    """A folder of new frames: a DICOM with PixelSpacing 0.3 x 0.25 mm (50 x 80) and a PNG (50 x 80); a 4-class
    2D V-Net checkpoint."""
    folder = tmp_path / "frames"
    folder.mkdir()
    rng = np.random.default_rng(3)
    write_dicom(folder / "echo_dcm.dcm", rng.integers(0, 4000, (50, 80)), pixel_spacing=(0.3, 0.25))
    Image.fromarray(rng.integers(0, 255, (50, 80)).astype(np.uint8)).save(folder / "echo_png.png")
    (tmp_path / "run").mkdir()
    torch.save(VNet(n_classes=4, dimensions=2).state_dict(), tmp_path / "run" / "iter_1.pth")
    return folder


def oracle(monkeypatch):
    """The network replaced by the known mask, one-hot on whatever grid the network sees (nearest-resized to it)."""

    def probability(net, image, **kwargs):
        mask = np.asarray(Image.fromarray(known_mask((50, 80))).resize(image.shape[::-1], Image.Resampling.NEAREST))
        return torch.from_numpy(np.eye(4, dtype=np.float32)[mask].transpose(2, 0, 1).copy())

    monkeypatch.setattr(predicting, "sliding_window_probability", probability)


def read_areas(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def predict(tmp_path, folder, *flags):
    args = predicting.predicting_parser().parse_args(
        ["--checkpoint", str(tmp_path / "run" / "iter_1.pth"), "--input", str(folder), "--patch_size", "32", "32",
         "--mc_passes", "2", "--device", "cpu", "--out", str(tmp_path / "pred"), *map(str, flags)]
    )  # fmt: skip
    return predicting.predict(args)


def test_areas_csv_counts_pixels_and_mm2_from_the_dicom_spacing(tmp_path, frames, monkeypatch):
    oracle(monkeypatch)
    out = predict(tmp_path, frames, "--class_names", *NAMES)
    rows = {r["ID"]: r for r in read_areas(out / "areas.csv")}
    header = list(read_areas(out / "areas.csv")[0])
    assert header == ["ID", "LV cavity (px)", "LV cavity (mm2)", "myocardium (px)", "myocardium (mm2)",
                      "left atrium (px)", "left atrium (mm2)", "spacing (mm)"]  # fmt: skip
    dcm, png = rows["echo_dcm"], rows["echo_png"]
    assert [int(dcm[f"{n} (px)"]) for n in NAMES] == [400, 300, 140]
    assert [float(dcm[f"{n} (mm2)"]) for n in NAMES] == [30.0, 22.5, 10.5]  # 0.3 x 0.25 = 0.075 mm² a pixel
    assert dcm["spacing (mm)"] == "0.3 x 0.25"
    assert [int(png[f"{n} (px)"]) for n in NAMES] == [400, 300, 140]
    assert [png[f"{n} (mm2)"] for n in NAMES] == ["", "", ""] and png["spacing (mm)"] == ""  # a PNG has no spacing
    settings = json.loads((out / "predict.json").read_text())
    assert settings["class_names"] == NAMES and settings["sizes"] == "areas.csv"
    overlay = np.asarray(Image.open(out / "echo_dcm_overlay.png"))
    assert overlay.shape[1] == 3 * 80 and overlay.shape[0] > 50  # frame | structures | uncertainty, then the legend


def test_areas_are_counted_on_the_frames_own_grid_after_resize(tmp_path, frames, monkeypatch):
    """With --resize 32 32 the network sees 32 x 32; the areas are those of the written 50 x 80 prediction, and the
    DICOM's spacing (of the stored frame) converts them."""
    oracle(monkeypatch)
    out = predict(tmp_path, frames, "--resize", "32", "32")
    rows = {r["ID"]: r for r in read_areas(out / "areas.csv")}
    for case_id in ("echo_dcm", "echo_png"):
        written = np.asarray(Image.open(out / f"{case_id}_pred.png"))
        assert written.shape == (50, 80)
        for c in (1, 2, 3):
            assert int(rows[case_id][f"class {c} (px)"]) == int((written == c).sum()) > 0  # default names
    dcm = rows["echo_dcm"]
    for c in (1, 2, 3):
        assert float(dcm[f"class {c} (mm2)"]) == pytest.approx(int(dcm[f"class {c} (px)"]) * 0.075, abs=1e-6)


def test_class_names_must_name_every_structure(tmp_path, frames):
    with pytest.raises(DataError, match=r"--class_names: 2 names for .* a 4-class network; give one per structure"):
        predict(tmp_path, frames, "--class_names", "LV cavity", "myocardium")


def test_frames_csv_of_a_binary_network_counts_lesions_and_mm2_from_the_dicom_spacing(tmp_path, frames, monkeypatch):
    # A 2-class checkpoint and an oracle predicting two lesions: the 400- and 140-pixel rectangles of known_mask.
    torch.save(VNet(n_classes=2, dimensions=2).state_dict(), tmp_path / "run" / "iter_1.pth")
    lesions = np.isin(known_mask((50, 80)), (1, 3)).astype(np.uint8)

    def probability(net, image, **kwargs):
        mask = np.asarray(Image.fromarray(lesions).resize(image.shape[::-1], Image.Resampling.NEAREST))
        return torch.from_numpy(np.eye(2, dtype=np.float32)[mask].transpose(2, 0, 1).copy())

    monkeypatch.setattr(predicting, "sliding_window_probability", probability)
    out = predict(tmp_path, frames)
    rows = {r["case"]: r for r in read_areas(out / "frames.csv")}
    dcm, png = rows["echo_dcm"], rows["echo_png"]
    assert (dcm["lesion_present"], dcm["lesions"], dcm["area_px"]) == ("yes", "2", "540")
    assert float(dcm["area_mm2"]) == pytest.approx(540 * 0.3 * 0.25) and png["area_mm2"] == ""  # a PNG: no spacing
    assert float(dcm["mean_uncertainty_in_lesion"]) == pytest.approx(0.0, abs=1e-5)  # one-hot passes: certain
    out = predict(tmp_path, frames, "--min_lesion", 541)  # fewer pixels than that: no lesion
    rows = read_areas(out / "frames.csv")
    assert [(r["lesion_present"], r["lesions"], r["area_px"], r["mean_uncertainty_in_lesion"]) for r in rows] == [
        ("no", "0", "0", "")
    ] * 2
    assert json.loads((out / "predict.json").read_text())["min_lesion"] == 541
