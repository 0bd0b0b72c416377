"""Where the cases come from: the LA h5 layout, NIfTI folders (Decathlon / nnU-Net) or folders of 2D images.

    <root>/2018LA_Seg_Training Set/<ID>/mri_norm2.h5      LA (UA-MT release), train.list + test.list required
    <root>/imagesTr/<ID>[_0000].nii.gz + labelsTr/<ID>.nii.gz (+ imagesTs/, labelsTs/)        NIfTI volumes
    <root>/images/<ID>.png|jpg|tif|dcm + masks/<ID>.png|tif                                    2D images

Every source gives, per case ID, the image as float32 and the label as uint8 class indices (None for an image
without a mask: an unlabelled case), and writes predictions back in the input's format and geometry. LA volumes are
read as stored (the release normalised them); NIfTI and 2D images are z-scored per image, as LA's preprocessing did.
For NIfTI and 2D, `<split>.list` files are optional: without them `train` is every case of imagesTr/ (images/) not
named in test.list, and `test` every case of imagesTs/ (none for 2D).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
from PIL import Image

from dataloaders.h5_cases import case_path, inspect_case, read_case, read_list
from utils.errors import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".dcm")
MASK_SUFFIXES = (".png", ".tif", ".tiff", ".bmp")  # lossless only: JPEG compression changes label values
NIFTI_SUFFIX = ".nii.gz"
NNUNET_CHANNEL = "_0000"  # nnU-Net names the first (only) channel of an image <ID>_0000.nii.gz


NORMALIZATIONS = ("zscore", "none")
US_CENTIMETRE = 3  # DICOM's PhysicalUnitsX/YDirection code for cm (ultrasound region calibration)


def normalize(image: np.ndarray, where: Path, normalization: str = "zscore") -> np.ndarray:
    """float32; with "zscore" (x - mean) / std over the whole image, as the LA preprocessing normalises each volume,
    with "none" as stored (for images normalised beforehand)."""
    image = image.astype(np.float32, copy=False)
    if not np.all(np.isfinite(image)):
        raise DataError(f"{where}: the image holds {np.count_nonzero(~np.isfinite(image))} NaN/Inf values; fix them")
    if normalization == "none":
        return image
    std = float(image.std())
    if std == 0:
        raise DataError(f"{where}: the image is constant; remove it from the lists")
    return (image - float(image.mean())) / std


def check_label(label: np.ndarray, num_classes: int, where: Path) -> np.ndarray:
    """Class indices 0..K-1 as uint8; a mask of only 0 and 255 (the usual binary export) is read as 0/1."""
    if label.dtype.kind == "f":
        if not np.all(np.isfinite(label) & (label == np.round(label))):
            raise DataError(f"{where}: the label holds non-integer values; store class indices 0..{num_classes - 1}")
    values = np.unique(label)
    if num_classes == 2 and values.size and set(values.tolist()) <= {0, 255}:
        label = label == 255
    elif values.min() < 0 or values.max() > num_classes - 1:
        raise DataError(unexpected_label_values(values, num_classes, where))
    return label.astype(np.uint8)


def unexpected_label_values(values: np.ndarray, num_classes: int, where: Path) -> str:
    """The message for label values outside 0..K-1. Only values 0..m with none missing look like an m+1-class map;
    anything else (a stray 5 in a 0/1 mask) is named as unexpected, not answered with a class count to pass."""
    stray = [v for v in values.tolist() if not 0 <= v <= num_classes - 1]
    present = ", ".join(f"{v:g}" for v in values.tolist()[:8]) + (", ..." if values.size > 8 else "")
    holds = "0/1 (or 0/255)" if num_classes == 2 else f"0..{num_classes - 1}"
    if num_classes > 2 and set(values.tolist()) <= {0, 255}:
        holds += " (0/255 is read as 0/1 only for 2 classes)"
    contiguous = values.min() == 0 and values.size == int(values.max()) + 1  # every value 0..max present
    more = f"--num_classes {int(values.max()) + 1}" if contiguous else "--num_classes"
    return (
        f"{where}: has label value {stray[0]:g}{' (and others)' if len(stray) > 1 else ''} (present: {present}); "
        f"a {num_classes}-class mask holds {holds}; check the mask, or pass {more} if it really has more classes"
    )


class Source:
    """The cases under `root`, read as (image, label or None). Subclasses set `dimensions` and the file layout."""

    dimensions = 3
    name = ""
    normalization = "zscore"  # NIfTI and 2D images; LA h5 volumes are read as stored (normalised by the release)
    reshapes = False  # whether `read` gives another grid than the stored one (2D crop / resize)

    def __init__(self, root: str | Path, num_classes: int = 2):
        self.root = Path(root)
        if not self.root.is_dir():
            raise DataError(f"{root}: dataset folder not found; pass --root_path (e.g. data/LA, see the README)")
        self.num_classes = num_classes

    def list_ids(self, split: str) -> list[str]:
        return read_list(self.root, split)

    def list_origin(self, split: str) -> str:
        """Where the IDs of `split` come from, for messages: the list file, or the folder they default to."""
        return str(self.root / f"{split}.list")

    def path(self, case_id: str) -> Path:
        """The case's image file, for messages."""
        raise NotImplementedError

    def has_label(self, case_id: str) -> bool:
        return True

    def inspect(self, case_id: str) -> tuple[int, ...]:
        """The image's shape, as cheaply as the format allows (headers where it has them)."""
        return self.read(case_id)[0].shape

    def read(self, case_id: str) -> tuple[np.ndarray, np.ndarray | None]:
        raise NotImplementedError

    def pixel_spacing(self, case_id: str) -> tuple[float, ...] | None:
        """The stored grid's spacing in mm along each axis (rows, columns[, ...]), or None when the file carries none
        (PNG, LA h5): areas and volumes are then given in pixels only."""
        return None

    # `read` gives a case on the network's grid. Volumes are read on their own grid; 2D frames may be cropped and
    # resized (ImageFolderSource), and these four methods bring results back to the frame's original grid.

    def original_image(self, case_id: str, image: np.ndarray) -> np.ndarray:
        """The image on its original grid; `image` is what `read` gave."""
        return image

    def original_label(self, case_id: str, label: np.ndarray | None) -> np.ndarray | None:
        """The label (class indices) on the image's original grid; `label` is what `read` gave."""
        return label

    def map_to_original(self, case_id: str, array: np.ndarray) -> np.ndarray:
        """A map on the network's grid (a label map, an uncertainty map) on the original grid."""
        return array

    def probability_to_original(self, case_id: str, probability: torch.Tensor) -> torch.Tensor:
        """Class probabilities (C, *network grid) on the original grid (C, *original shape)."""
        return probability

    def write_outputs(
        self, case_id: str, out: Path, arrays: dict[str, np.ndarray], original_grid: bool = False
    ) -> list[Path]:
        """Write each `suffix: array` (a prediction, an uncertainty map, ...) as <out>/<ID>_<suffix>.<format>, in
        the geometry of the case's image: arrays on the network's grid are brought back to it first, unless
        `original_grid` says they are on it already."""
        raise NotImplementedError


class LASource(Source):
    """The UA-MT release's layout: <root>/2018LA_Seg_Training Set/<ID>/mri_norm2.h5, lists required."""

    name = "LA h5"

    def path(self, case_id: str) -> Path:
        return case_path(self.root, case_id)

    def inspect(self, case_id: str) -> tuple[int, ...]:
        return inspect_case(self.path(case_id))

    def read(self, case_id: str) -> tuple[np.ndarray, np.ndarray | None]:
        return read_case(self.path(case_id), self.num_classes)

    def write_outputs(
        self, case_id: str, out: Path, arrays: dict[str, np.ndarray], original_grid: bool = False
    ) -> list[Path]:
        paths = [out / f"{case_id}_{suffix}.nii.gz" for suffix in arrays]
        for path, array in zip(paths, arrays.values()):
            nib.save(nib.Nifti1Image(array, np.eye(4)), path)  # the h5 files carry no geometry
        return paths


def _nifti_ids(folder: Path) -> dict[str, Path]:
    files = sorted(p for p in folder.glob(f"*{NIFTI_SUFFIX}") if not p.name.startswith("."))
    ids = {}
    for path in files:
        stem = path.name[: -len(NIFTI_SUFFIX)]
        ids[stem.removesuffix(NNUNET_CHANNEL)] = path
    return ids


class NiftiSource(Source):
    """Decathlon / nnU-Net layout: imagesTr/<ID>.nii.gz (or <ID>_0000.nii.gz), labelsTr/<ID>.nii.gz; imagesTs/ and
    labelsTs/ for the test split when there is no test.list. One channel; the affine is written back to outputs."""

    name = "NIfTI"

    def __init__(self, root: str | Path, num_classes: int = 2):
        super().__init__(root, num_classes)
        self.images = _nifti_ids(self.root / "imagesTr") | _nifti_ids(self.root / "imagesTs")
        self.labels = _nifti_ids(self.root / "labelsTr") | _nifti_ids(self.root / "labelsTs")

    @classmethod
    def of_folder(cls, folder: str | Path, num_classes: int = 2) -> NiftiSource:
        """The NIfTI volumes lying in `folder` itself, without labels (new cases to predict)."""
        source = cls(folder, num_classes)
        source.images, source.labels = _nifti_ids(Path(folder)), {}
        return source

    def list_ids(self, split: str) -> list[str]:
        if (self.root / f"{split}.list").is_file():
            ids = read_list(self.root, split)
        else:
            ids = list(_nifti_ids(self.root / ("imagesTr" if split == "train" else "imagesTs")))
            if split == "train":
                ids = _without_test_cases(self.root, ids)
        return _with_images(ids, self.images, self.root / "imagesTr",
                            lambda i: f"imagesTr/{i}{NIFTI_SUFFIX} (or {i}{NNUNET_CHANNEL}{NIFTI_SUFFIX})")  # fmt: skip

    def list_origin(self, split: str) -> str:
        if (self.root / f"{split}.list").is_file():
            return super().list_origin(split)
        if split == "train":
            return f"{self.root / 'imagesTr'}/ (no train.list: every image not in test.list)"
        return f"{self.root / 'imagesTs'}/ (no {split}.list)"

    def path(self, case_id: str) -> Path:
        return self.images[case_id]

    def has_label(self, case_id: str) -> bool:
        return case_id in self.labels

    def _load(self, path: Path) -> nib.Nifti1Image:
        try:
            volume = nib.load(path)
        except Exception as error:  # nibabel raises several kinds for damaged files
            raise DataError(f"{path}: not a readable NIfTI file ({error}); re-export it") from error
        if len(volume.shape) != 3:
            raise DataError(
                f"{path}: shape {volume.shape}; store one 3D volume per file (one channel: split modalities into "
                f"separate tasks)"
            )
        return volume

    def inspect(self, case_id: str) -> tuple[int, ...]:
        shape = self._load(self.path(case_id)).shape
        if self.has_label(case_id):
            label_shape = self._load(self.labels[case_id]).shape
            if label_shape != shape:
                raise DataError(
                    f"{self.labels[case_id]}: label shape {label_shape} differs from image shape {shape}; resample "
                    f"the label onto the image grid"
                )
        return tuple(shape)

    def read(self, case_id: str) -> tuple[np.ndarray, np.ndarray | None]:
        path = self.path(case_id)
        self.inspect(case_id)  # label and image on the same grid
        image = normalize(np.asarray(self._load(path).dataobj, dtype=np.float32), path, self.normalization)
        label = None
        if self.has_label(case_id):
            label_path = self.labels[case_id]
            label = check_label(np.asarray(self._load(label_path).dataobj), self.num_classes, label_path)
        return image, label

    def spacing(self, case_id: str) -> tuple[float, ...]:
        return tuple(float(z) for z in self._load(self.path(case_id)).header.get_zooms()[:3])

    def pixel_spacing(self, case_id: str) -> tuple[float, ...] | None:
        """The header's voxel sizes, taken as mm (NIfTI's usual unit; the header's xyzt_units are not checked)."""
        return self.spacing(case_id)

    def write_outputs(
        self, case_id: str, out: Path, arrays: dict[str, np.ndarray], original_grid: bool = False
    ) -> list[Path]:
        source = self._load(self.path(case_id))
        paths = [out / f"{case_id}_{suffix}{NIFTI_SUFFIX}" for suffix in arrays]
        for path, array in zip(paths, arrays.values()):
            header = source.header.copy()
            header.set_data_dtype(array.dtype)
            nib.save(nib.Nifti1Image(array, source.affine, header), path)
        return paths


def _without_test_cases(root: Path, ids: list[str]) -> list[str]:
    """The default training set when there is no train.list: every case not named in test.list (if there is one),
    so that writing a test.list alone never makes the two splits overlap."""
    if not (root / "test.list").is_file():
        return ids
    test = set(read_list(root, "test"))
    return [i for i in ids if i not in test]


def _with_images(ids: list[str], images: Mapping[str, Path], folder: Path, expected: Callable[[str], str]) -> list[str]:
    """`ids` when each has an image; else the DataError that names the first without one and where it was expected."""
    missing = [i for i in ids if i not in images]
    if missing:
        raise DataError(f"{folder}: no image for the listed ID {missing[0]}; expected {expected(missing[0])}")
    return ids


def _find(folder: Path, case_id: str, suffixes: Sequence[str]) -> Path | None:
    for suffix in suffixes:
        for candidate in (folder / f"{case_id}{suffix}", folder / f"{case_id}{suffix.upper()}"):
            if candidate.is_file():
                return candidate
    return None


def _read_picture(path: Path) -> np.ndarray:
    """A 2D picture as a (rows, columns) array: grey levels of PNG/JPEG/TIFF/BMP (colour converted to luminance),
    the pixel data of a single-frame DICOM."""
    try:
        if path.suffix.lower() == ".dcm":
            import pydicom  # only needed for DICOM frames

            pixels = pydicom.dcmread(path).pixel_array
            if pixels.ndim == 3 and pixels.shape[-1] in (3, 4):  # one colour frame
                pixels = pixels[..., :3].mean(-1)
            if pixels.ndim != 2:
                raise DataError(f"{path}: holds {pixels.shape[0]} frames; extract them into one file per frame")
            return np.asarray(pixels)
        with Image.open(path) as picture:
            if picture.mode not in ("L", "I", "I;16", "F", "1"):
                picture = picture.convert("L")
            return np.asarray(picture)
    except DataError:
        raise
    except Exception as error:
        raise DataError(f"{path}: not a readable image ({error}); re-export it") from error


def dicom_pixel_spacing(path: Path) -> tuple[float, float] | None:
    """(row spacing, column spacing) in mm of a DICOM frame: PixelSpacing (0028,0030), else the calibration of an
    ultrasound file's single region (SequenceOfUltrasoundRegions, physical deltas in cm, as echo machines write it);
    None when neither is there or the values are not positive."""
    import pydicom  # only needed for DICOM frames

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
    except Exception as error:
        raise DataError(f"{path}: not a readable DICOM file ({error}); re-export it") from error
    spacing = ds.get("PixelSpacing")
    if spacing is not None and len(spacing) == 2:
        rows, cols = float(spacing[0]), float(spacing[1])  # DICOM orders it row spacing \ column spacing
    else:
        regions = ds.get("SequenceOfUltrasoundRegions") or []
        # Several regions (e.g. a B-mode and a Doppler pane) may differ in scale: only a single one is unambiguous.
        units = [r.get(f"PhysicalUnits{axis}Direction") for r in regions[:1] for axis in "XY"]
        if len(regions) != 1 or units != [US_CENTIMETRE, US_CENTIMETRE]:
            return None
        rows, cols = 10 * abs(float(regions[0].PhysicalDeltaY)), 10 * abs(float(regions[0].PhysicalDeltaX))
    return (rows, cols) if rows > 0 and cols > 0 else None


class ImageFolderSource(Source):
    """2D images: images/<ID>.<png|jpg|tif|bmp|dcm> and, for labelled cases, masks/<ID>.<png|tif|bmp> of class
    indices (or 0/255). `center_crop` (rows, columns) then `resize` (rows, columns) or `letterbox` (a side) are
    applied to both (the mask by nearest neighbour) and undone when predictions are written.

    `letterbox` SIDE keeps the aspect ratio: the (cropped) frame is scaled so that its longest side is SIDE, then
    centred in a SIDE x SIDE square. The padding is the frame's raw 0 (black, like an ultrasound frame's own
    background outside its sector) normalised with the frame's statistics, which the padding does not change; the
    mask is padded with background."""

    dimensions = 2
    name = "2D images"

    def __init__(
        self,
        root: str | Path,
        num_classes: int = 2,
        center_crop: Sequence[int] | None = None,
        resize: Sequence[int] | None = None,
        images_folder: str | Path | None = None,
        letterbox: int | None = None,
    ):
        super().__init__(root, num_classes)
        self.center_crop = tuple(center_crop) if center_crop else None
        self.resize = tuple(resize) if resize else None
        self.letterbox = letterbox or None
        if self.resize and self.letterbox:
            raise DataError("--resize and --letterbox both scale the frame: give one of them")
        images = Path(images_folder) if images_folder is not None else self.root / "images"
        self.images = {p.stem: p for p in sorted(images.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES}
        self._frame_shapes: dict[str, tuple[int, int]] = {}

    def list_ids(self, split: str) -> list[str]:
        if (self.root / f"{split}.list").is_file():
            ids = read_list(self.root, split)
        else:
            ids = _without_test_cases(self.root, list(self.images)) if split == "train" else []
        return _with_images(ids, self.images, self.root / "images",
                            lambda i: f"images/{i}.png (or {', '.join(IMAGE_SUFFIXES[1:])})")  # fmt: skip

    def list_origin(self, split: str) -> str:
        if (self.root / f"{split}.list").is_file():
            return super().list_origin(split)
        if split == "train":
            return f"{self.root / 'images'}/ (no train.list: every image not in test.list)"
        return f"no {split}.list in {self.root}"

    def path(self, case_id: str) -> Path:
        return self.images[case_id]

    def mask_path(self, case_id: str) -> Path | None:
        path = _find(self.root / "masks", case_id, MASK_SUFFIXES)
        lossy = _find(self.root / "masks", case_id, (".jpg", ".jpeg")) if path is None else None
        if lossy is not None:  # else the case would silently count as unlabelled
            raise DataError(f"{lossy}: JPEG compression changes label values; save the mask as PNG or TIFF")
        return path

    def has_label(self, case_id: str) -> bool:
        return self.mask_path(case_id) is not None

    def _crop_box(self, shape: tuple[int, int]) -> tuple[slice, slice]:
        if self.center_crop is None:
            return slice(0, shape[0]), slice(0, shape[1])
        starts = [max((s - c) // 2, 0) for s, c in zip(shape, self.center_crop)]
        return tuple(slice(a, a + min(c, s)) for a, c, s in zip(starts, self.center_crop, shape))

    def letterbox_box(self, crop_shape: tuple[int, int]) -> tuple[slice, slice]:
        """Where a crop of `crop_shape` lies in the --letterbox square once scaled: longest side SIDE, the other
        rounded (at least 1 pixel), centred (an odd remainder of padding goes to the bottom / right)."""
        side = self.letterbox
        scaled = [min(side, max(1, round(s * side / max(crop_shape)))) for s in crop_shape]
        return tuple(slice((side - s) // 2, (side - s) // 2 + s) for s in scaled)

    def _geometry(self, picture: np.ndarray, nearest: bool) -> np.ndarray:
        """Crop, then resize (or scale for the letterbox, before its padding: `_pad`)."""
        picture = picture[self._crop_box(picture.shape)]
        size = self.resize
        if self.letterbox:
            size = tuple(b.stop - b.start for b in self.letterbox_box(picture.shape))
        if size is not None and picture.shape != size:
            resample = Image.Resampling.NEAREST if nearest else Image.Resampling.BILINEAR
            mode_array = picture.astype(np.uint8 if nearest else np.float32)
            picture = np.asarray(Image.fromarray(mode_array).resize(size[::-1], resample))
        return picture

    def _pad(self, picture: np.ndarray, fill: float) -> np.ndarray:
        """The scaled frame centred in the --letterbox square, `fill` around it (unchanged without --letterbox)."""
        if not self.letterbox:
            return picture
        square = np.full((self.letterbox, self.letterbox), fill, dtype=picture.dtype)
        square[self.letterbox_box(picture.shape)] = picture
        return square

    @property
    def reshapes(self) -> bool:
        """Whether frames are cropped, resized or letterboxed for the network (else its grid is the frame's)."""
        return self.center_crop is not None or self.resize is not None or self.letterbox is not None

    def frame_shape(self, case_id: str) -> tuple[int, int]:
        """The (rows, columns) of the frame as stored."""
        if case_id not in self._frame_shapes:
            self._frame_shapes[case_id] = _read_picture(self.path(case_id)).shape[:2]
        return self._frame_shapes[case_id]

    def _mask(self, case_id: str, frame_shape: tuple[int, ...]) -> np.ndarray | None:
        """The checked mask (class indices) at the frame's size, or None for an unlabelled frame."""
        mask_path = self.mask_path(case_id)
        if mask_path is None:
            return None
        mask = _read_picture(mask_path)
        if mask.shape != frame_shape:
            raise DataError(
                f"{mask_path}: mask size {mask.shape} differs from image size {frame_shape}; export the mask at "
                f"the image's size"
            )
        return check_label(mask, self.num_classes, mask_path)

    def read(self, case_id: str) -> tuple[np.ndarray, np.ndarray | None]:
        path = self.path(case_id)
        image = _read_picture(path).astype(np.float32)
        self._frame_shapes[case_id] = image.shape
        mask = self._mask(case_id, image.shape)
        label = None if mask is None else self._pad(self._geometry(mask, nearest=True), 0)
        scaled = self._geometry(image, nearest=False)
        normalized = normalize(scaled, path, self.normalization)  # the frame's statistics, without the padding
        black = 0.0 if self.normalization == "none" else -float(scaled.mean()) / float(scaled.std())
        return self._pad(normalized, black), label

    def pixel_spacing(self, case_id: str) -> tuple[float, float] | None:
        """The stored frame's spacing (DICOM only; PNG, JPEG, TIFF and BMP carry none we trust: their dpi tags are
        print sizes). It is that of the frame's own grid, on which predict.py counts areas, not of the --resize grid."""
        path = self.path(case_id)
        return dicom_pixel_spacing(path) if path.suffix.lower() == ".dcm" else None

    def original_image(self, case_id: str, image: np.ndarray) -> np.ndarray:
        """The frame as stored (grey levels, not normalised), at its own size."""
        return _read_picture(self.path(case_id)).astype(np.float32) if self.reshapes else image

    def original_label(self, case_id: str, label: np.ndarray | None) -> np.ndarray | None:
        """The mask read again at the frame's size: the ground truth as drawn, not its resized copy."""
        return self._mask(case_id, self.frame_shape(case_id)) if self.reshapes and label is not None else label

    def map_to_original(self, case_id: str, array: np.ndarray) -> np.ndarray:
        return self.restore_geometry(array, self.frame_shape(case_id)) if self.reshapes else array

    def probability_to_original(self, case_id: str, probability: torch.Tensor) -> torch.Tensor:
        """Each class's probability resized bilinearly to the crop (then argmax gives smoother edges than resizing
        the label map by nearest neighbour); outside the crop, where the network saw nothing, background."""
        if not self.reshapes:
            return probability
        shape = self.frame_shape(case_id)
        channels = probability.float().cpu().numpy()
        restored = np.stack([self.restore_geometry(channel, shape) for channel in channels])
        outside = np.ones(shape, bool)
        outside[self._crop_box(shape)] = False
        restored[0][outside] = 1.0
        return torch.from_numpy(restored).to(probability.device)

    def restore_geometry(self, array: np.ndarray, original_shape: tuple[int, int]) -> np.ndarray:
        """Undo `letterbox` (its padding cut off) or `resize` (nearest neighbour for uint8 label maps, bilinear
        otherwise) and `center_crop` (zeros outside the crop) of a map."""
        box = self._crop_box(original_shape)
        crop_shape = tuple(b.stop - b.start for b in box)
        if self.letterbox:
            array = array[self.letterbox_box(crop_shape)]
        if array.shape != crop_shape:
            resample = Image.Resampling.NEAREST if array.dtype == np.uint8 else Image.Resampling.BILINEAR
            mode_array = array if array.dtype == np.uint8 else array.astype(np.float32)
            array = np.asarray(Image.fromarray(mode_array).resize(crop_shape[::-1], resample))
        full = np.zeros(original_shape, dtype=array.dtype)
        full[box] = array
        return full

    def write_outputs(
        self, case_id: str, out: Path, arrays: dict[str, np.ndarray], original_grid: bool = False
    ) -> list[Path]:
        """Label maps (uint8) as PNG, 0/255 for two classes, else the class indices; other maps (float, e.g. the
        uncertainty) as 32-bit float TIFF; all at the frame's size."""
        paths = []
        for suffix, array in arrays.items():
            array = array if original_grid else self.map_to_original(case_id, array)
            if array.dtype == np.uint8:
                path = out / f"{case_id}_{suffix}.png"
                Image.fromarray(array * 255 if self.num_classes == 2 else array).save(path)
            else:
                path = out / f"{case_id}_{suffix}.tif"
                Image.fromarray(array.astype(np.float32)).save(path)
            paths.append(path)
        return paths


def open_folder(
    folder: str | Path,
    num_classes: int = 2,
    center_crop: Sequence[int] | None = None,
    resize: Sequence[int] | None = None,
    normalization: str = "zscore",
    letterbox: int | None = None,
) -> Source:
    """New cases lying in `folder` itself (no labels): NIfTI volumes if it holds any, else 2D images."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: folder not found; pass a folder of .nii.gz volumes or 2D images")
    if any(folder.glob(f"*{NIFTI_SUFFIX}")):
        source: Source = NiftiSource.of_folder(folder, num_classes)
    else:
        source = ImageFolderSource(folder, num_classes, center_crop, resize, images_folder=folder, letterbox=letterbox)
    if not source.images:
        lists = sorted(p.name for p in folder.glob("*.list"))
        hint = f"; it holds {', '.join(lists)}: for a dataset pass --root_path {folder} --split test" if lists else ""
        raise DataError(f"{folder}: no .nii.gz volume nor image ({', '.join(IMAGE_SUFFIXES)}) found{hint}")
    return _configured(source, center_crop, resize, normalization, letterbox)


def open_source(
    root: str | Path,
    num_classes: int = 2,
    center_crop: Sequence[int] | None = None,
    resize: Sequence[int] | None = None,
    normalization: str = "zscore",
    letterbox: int | None = None,
) -> Source:
    """The source whose layout `root` has: imagesTr/ → NIfTI, images/ → 2D images, otherwise the LA h5 layout."""
    root = Path(root)
    if (root / "imagesTr").is_dir() or (root / "imagesTs").is_dir():
        source: Source = NiftiSource(root, num_classes)
    elif (root / "images").is_dir():
        source = ImageFolderSource(root, num_classes, center_crop, resize, letterbox=letterbox)
    else:
        source = LASource(root, num_classes)
    return _configured(source, center_crop, resize, normalization, letterbox)


def _configured(
    source: Source,
    center_crop: Sequence[int] | None,
    resize: Sequence[int] | None,
    normalization: str,
    letterbox: int | None = None,
) -> Source:
    """The options every source takes, checked: crop, resize and letterbox for 2D images only, a positive letterbox
    side, a known normalisation."""
    if (center_crop or resize or letterbox) and source.dimensions != 2:
        raise DataError(
            f"--center_crop, --resize and --letterbox apply to 2D images; {source.root} holds {source.name} volumes"
        )
    if letterbox is not None and letterbox <= 0:
        raise DataError(f"--letterbox {letterbox}: give the square's side in pixels (e.g. 256)")
    if normalization not in NORMALIZATIONS:
        raise DataError(f"--normalization {normalization}: choose one of {', '.join(NORMALIZATIONS)}")
    source.normalization = normalization
    return source
