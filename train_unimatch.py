"""UniMatch (Yang et al., CVPR 2023): pseudo-labels of the weak view, above a confidence threshold, supervise two strong
views (intensity augmentation and CutMix) and a feature-perturbed stream of one network (methods/unimatch.py)."""

from methods import METHODS
from training.loop import run_training

if __name__ == "__main__":
    run_training(METHODS["unimatch"], __doc__, exp="UniMatch")
