"""V-Net trained on the labelled cases alone (the first --labelnum of train.list; 80 gives the upper bound)."""

from methods import METHODS
from training.loop import run_training

if __name__ == "__main__":
    run_training(METHODS["supervised"], __doc__, exp="vnet_supervised")
