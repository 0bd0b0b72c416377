"""UA-MT with the uncertainty-aware consistency on the unlabelled items only (the authors' recommended setting)."""

from utils.training import run_training, training_parser

if __name__ == "__main__":
    parser = training_parser(__doc__, exp="UAMT_unlabel", semi_supervised=True)
    run_training(parser, consistency_on="unlabeled")
