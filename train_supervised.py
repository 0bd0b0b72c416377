"""V-Net trained on the labelled cases alone (the first --labelnum of train.list; 80 gives the upper bound)."""

from utils.training import run_training, training_parser

if __name__ == "__main__":
    parser = training_parser(__doc__, exp="vnet_supervised", semi_supervised=False)
    run_training(parser, consistency_on="none")
