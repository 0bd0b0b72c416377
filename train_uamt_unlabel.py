"""UA-MT with the uncertainty-aware consistency on the unlabelled items only (the authors' recommended setting)."""

from methods import METHODS
from training.loop import run_training

if __name__ == "__main__":
    run_training(METHODS["uamt_unlabel"], __doc__, exp="UAMT_unlabel")
