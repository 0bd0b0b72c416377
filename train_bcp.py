"""Bidirectional copy-paste (BCP, Bai et al., CVPR 2023): copy-paste pre-training on the labelled cases, then
self-training on labelled/unlabelled mixes with an EMA teacher's pseudo-labels (methods/bcp.py)."""

from methods import METHODS
from training.loop import run_training

if __name__ == "__main__":
    run_training(METHODS["bcp"], __doc__, exp="BCP")
