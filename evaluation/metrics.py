"""The paper's per-case metrics (medpy, as UA-MT computed them), per foreground class for K classes."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from medpy import metric

METRICS = ("dice", "jaccard", "hd95", "asd", "precision", "recall")


DISTANCE_METRICS = ("hd95", "asd")


def case_metrics(prediction: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Dice, Jaccard, 95% Hausdorff and average surface distance (voxels), precision and recall, by medpy.

    Empty masks: both empty scores Dice = Jaccard = 1 (Metrics Reloaded's Dice; its IoU stays NaN there, ours is 1 so
    that J = D / (2 - D) always holds); exactly one empty scores Dice = Jaccard = 0. Precision is undefined (NaN) for
    an empty prediction, recall for an empty label, the surface distances when either is empty, so that summaries
    count them instead of averaging in a number. An empty prediction of a non-empty label has recall 0, a prediction
    on an empty label precision 0 (medpy's TP / (TP + FP)).
    """
    prediction, truth = prediction.astype(bool), truth.astype(bool)
    predicted, present = bool(prediction.any()), bool(truth.any())
    result = {
        # medpy would divide 0 by 0 for two empty masks: nothing to find and nothing found is a perfect score
        "dice": metric.binary.dc(prediction, truth) if predicted or present else 1.0,
        "jaccard": metric.binary.jc(prediction, truth) if predicted or present else 1.0,
        "precision": metric.binary.precision(prediction, truth) if predicted else math.nan,
        "recall": metric.binary.recall(prediction, truth) if present else math.nan,
        "hd95": metric.binary.hd95(prediction, truth) if predicted and present else math.nan,
        "asd": metric.binary.asd(prediction, truth) if predicted and present else math.nan,
    }
    return {name: float(result[name]) for name in METRICS}


def metric_columns(num_classes: int) -> tuple[str, ...]:
    """The metrics.csv columns after 'case': for K = 2 the paper's six; for K > 2 the six means over the foreground
    classes under the plain names, then `<metric>_<c>` for each foreground class c."""
    if num_classes == 2:
        return METRICS
    return METRICS + tuple(f"{name}_{c}" for c in range(1, num_classes) for name in METRICS)


def class_metrics(prediction: np.ndarray, truth: np.ndarray, num_classes: int) -> dict[str, float]:
    """`case_metrics` of each foreground class c (prediction == c against truth == c) as `<metric>_<c>`, and under
    the plain names the mean over the foreground classes where the metric is defined (NaN where it is for none; a
    class absent from both maps counts with Dice = Jaccard = 1). For K = 2 the plain names hold exactly the binary
    metrics of class 1."""
    per_class = {c: case_metrics(prediction == c, truth == c) for c in range(1, num_classes)}
    result = {}
    for name in METRICS:
        values = np.array([per_class[c][name] for c in per_class])
        finite = values[np.isfinite(values)]
        result[name] = float(finite.mean()) if finite.size else math.nan
    for c, values in per_class.items():
        result |= {f"{name}_{c}": value for name, value in values.items()}
    return result


def summarize(
    rows: list[dict[str, float]], columns: Sequence[str] = METRICS
) -> tuple[dict[str, float], dict[str, int]]:
    """Mean of each metric over the cases where it is defined, and how many cases left it undefined."""
    means, undefined = {}, {}
    for name in columns:
        values = np.array([row[name] for row in rows], dtype=float)
        finite = values[np.isfinite(values)]
        means[name] = float(finite.mean()) if finite.size else math.nan
        undefined[name] = int(values.size - finite.size)
    return means, undefined
