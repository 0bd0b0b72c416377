"""Clean frames (an empty reference) and lesion-wise detection, for binary data (K = 2).

Per frame (`lesion_counts`, metrics.csv's DETECTION_COLUMNS): the frame is called positive when its prediction has at
least `min_lesion` pixels (test_LA.py --min_lesion); a frame called negative has no predicted lesion. Lesions are
connected components with full connectivity (8-connected in 2D, 26-connected in 3D, as --postprocess lcc). A
reference lesion is found when a predicted component overlaps it by at least one pixel; a predicted component is false
when it overlaps no reference lesion. There is no one-to-one pairing: one predicted component over two reference
lesions finds both and is not false. (Metrics Reloaded instead pairs components one to one under a localisation
criterion, and labels them face-connected by default; its empty-reference rules match evaluation/metrics.py's.)

Per run (`detection_summary`): the overlap metrics on all frames and on lesion frames (reference non-empty), frame
sensitivity and specificity, false-positive frames, and lesion-wise recall, precision and F1 pooled over the frames.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import numpy as np

from evaluation.metrics import summarize
from evaluation.postprocess import apply_min_lesion
from utils.components import components

DETECTION_COLUMNS = ("reference_empty", "prediction_empty", "lesions_reference", "lesions_found", "lesions_predicted",
                     "lesions_false")  # fmt: skip
# The metrics reported on all frames and on lesion frames.
OVERLAP_METRICS = ("dice", "jaccard", "precision", "recall")


def lesion_counts(prediction: np.ndarray, truth: np.ndarray, min_lesion: int = 1) -> dict[str, int]:
    """The frame's DETECTION_COLUMNS: reference_empty and prediction_empty (1 or 0; the prediction is empty when it
    has fewer than `min_lesion` pixels), lesions_reference (components of the reference), lesions_found (those a
    predicted component overlaps), lesions_predicted (components of the prediction, none when it is empty) and
    lesions_false (predicted components overlapping no reference lesion)."""
    truth = truth.astype(bool)
    prediction = apply_min_lesion(prediction.astype(bool), min_lesion)  # a frame called negative predicts nothing
    reference, n_reference = components(truth)
    predicted, n_predicted = components(prediction)
    overlap = prediction & truth
    return {
        "reference_empty": int(n_reference == 0),
        "prediction_empty": int(n_predicted == 0),
        "lesions_reference": n_reference,
        "lesions_found": len(np.unique(reference[overlap])),
        "lesions_predicted": n_predicted,
        "lesions_false": n_predicted - len(np.unique(predicted[overlap])),
    }


def has_clean_frames(rows: Iterable[Mapping[str, float]]) -> bool:
    """Whether any frame has an empty reference (rows without the detection columns have none)."""
    return any(row.get("reference_empty", 0) == 1 for row in rows)


def ratio(numerator: float, denominator: float) -> float:
    """numerator / denominator, NaN when the denominator is 0 (undefined, e.g. specificity without clean frames)."""
    return numerator / denominator if denominator else math.nan


def f1(precision: float, recall: float) -> float:
    """Harmonic mean of precision and recall: NaN when either is undefined, 0 when both are 0."""
    if math.isnan(precision) or math.isnan(recall):
        return math.nan
    return ratio(2 * precision * recall, precision + recall) if precision + recall else 0.0


def detection_summary(rows: Iterable[Mapping[str, float]]) -> dict[str, float]:
    """One run's frame- and lesion-level numbers from its per-frame rows (metrics.csv: OVERLAP_METRICS and
    DETECTION_COLUMNS): `<metric>_all` and `<metric>_lesion_frames` (means over the frames where defined),
    frames, clean_frames, false_positive_frames (clean frames called positive), frame_sensitivity (lesion frames
    called positive / lesion frames), frame_specificity (clean frames called negative / clean frames), lesion_recall
    (found / reference lesions), lesion_precision (predicted components overlapping a reference lesion / predicted
    components) and lesion_f1, the lesions pooled over the frames."""
    rows = list(rows)
    lesion_rows = [row for row in rows if not row["reference_empty"]]
    clean = len(rows) - len(lesion_rows)
    false_positive = sum(1 for row in rows if row["reference_empty"] and not row["prediction_empty"])
    called = sum(1 for row in lesion_rows if not row["prediction_empty"])
    total = {name: sum(row[name] for row in rows) for name in DETECTION_COLUMNS[2:]}
    precision = ratio(total["lesions_predicted"] - total["lesions_false"], total["lesions_predicted"])
    recall = ratio(total["lesions_found"], total["lesions_reference"])
    result = {f"{m}_all": v for m, v in summarize(rows, OVERLAP_METRICS)[0].items()}
    result |= {f"{m}_lesion_frames": v for m, v in summarize(lesion_rows, OVERLAP_METRICS)[0].items()}
    return result | {
        "frames": len(rows),
        "clean_frames": clean,
        "false_positive_frames": false_positive,
        "frame_sensitivity": ratio(called, len(lesion_rows)),
        "frame_specificity": ratio(clean - false_positive, clean),
        "lesion_recall": recall,
        "lesion_precision": precision,
        "lesion_f1": f1(precision, recall),
    }
