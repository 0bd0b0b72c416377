"""Cross pseudo supervision (CPS, Chen et al., CVPR 2021): two networks, each supervised on the labelled items and on
the other's argmax pseudo-labels of every item (methods/cps.py)."""

from methods import METHODS
from training.loop import run_training

if __name__ == "__main__":
    run_training(METHODS["cps"], __doc__, exp="CPS")
