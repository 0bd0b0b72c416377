"""Sliding-window evaluation of a trained checkpoint on test.list (Dice, Jaccard, 95HD, ASD, precision, recall)."""

from evaluation.testing import run_testing

if __name__ == "__main__":
    run_testing()
