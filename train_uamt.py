"""UA-MT with the uncertainty-aware consistency on every item of the batch, labelled and unlabelled."""

from methods import METHODS
from training.loop import run_training

if __name__ == "__main__":
    run_training(METHODS["uamt"], __doc__, exp="UAMT")
