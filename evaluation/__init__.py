"""Evaluation: sliding windows, metrics, the test script's job, prediction of new cases, results tables."""
