"""Train with any method of methods/, chosen by name: python3 train.py --method NAME [flags].

    python3 train.py --method uamt_unlabel --root_path data/LA --labelnum 16     # = train_uamt_unlabel.py
    python3 train.py --method unimatch --help                                     # that method's flags

--method comes first in meaning, not in place: the other flags are the loop's and the method's, as each
train_<method>.py script (an alias of this one with --method set) takes them. --exp defaults to the method's name.
"""

from methods import METHODS
from training.loop import run_training
from utils.cli import Parser

if __name__ == "__main__":
    chooser = Parser(description=__doc__, add_help=False)
    chooser.add_argument("--method", choices=list(METHODS), help="the training method (methods/)")
    known, rest = chooser.parse_known_args()
    if known.method is None:  # --help, or no --method: the methods by name
        chooser.add_argument("-h", "--help", action="help", help="show this help and exit")
        chooser.parse_args(rest)  # --help prints and exits
        chooser.error("--method is required: one of " + ", ".join(METHODS))
    method = METHODS[known.method]
    run_training(method, (method.__doc__ or "").strip() or __doc__, exp=known.method, argv=rest)
