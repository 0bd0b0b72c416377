"""Segment new cases with a trained checkpoint: predictions, uncertainty maps, overlays (see README)."""

from evaluation.predicting import run_predicting

if __name__ == "__main__":
    run_predicting()
