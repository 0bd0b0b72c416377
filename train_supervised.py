"""V-Net trained on the labelled cases alone (the first --labelnum of train.list; 80 gives the upper bound)."""

from methods import Supervised
from training.loop import run_training

if __name__ == "__main__":
    run_training(Supervised, __doc__, exp="vnet_supervised")
