"""UA-MT with the uncertainty-aware consistency on every item of the batch, labelled and unlabelled."""

from methods import UAMT
from training.loop import run_training

if __name__ == "__main__":
    run_training(UAMT, __doc__, exp="UAMT")
