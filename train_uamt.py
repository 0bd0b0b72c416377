"""UA-MT with the uncertainty-aware consistency on every item of the batch, labelled and unlabelled."""

from utils.training import run_training, training_parser

if __name__ == "__main__":
    parser = training_parser(__doc__, exp="UAMT", semi_supervised=True)
    run_training(parser, consistency_on="all")
