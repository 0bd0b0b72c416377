"""The main job on an embedded default: UA-MT (unlabelled consistency) trained briefly and evaluated.

With no --root_path, a small synthetic LA-like dataset is generated in data/synthetic_LA (20 training cases,
4 of them labelled, and 4 test cases). About 5 minutes on 2 CPU cores.
"""

from pathlib import Path

from dataloaders.synthetic import make_synthetic_la
from evaluation.testing import evaluate, testing_parser
from methods import UAMTUnlabel
from training.loop import train
from training.options import training_parser
from utils.cli import DEVICE_HELP, Parser, run_guarded
from utils.threads import add_threads_flag

SYNTHETIC_ROOT = Path("data/synthetic_LA")


def main() -> None:
    parser = Parser(description=__doc__)
    parser.add_argument("--root_path", default=None, help="a dataset in the LA layout (default: synthetic)")
    parser.add_argument("--iterations", type=int, default=80, help="training iterations (the schedule scales)")
    parser.add_argument("--labelnum", type=int, default=4, help="labelled cases of train.list")
    parser.add_argument("--device", default=None, help=DEVICE_HELP)
    add_threads_flag(parser)
    args = parser.parse_args()
    root = args.root_path
    if root is None:
        root = SYNTHETIC_ROOT
        if not (root / "test.list").is_file():
            print(f"generating a synthetic LA-like dataset in {root}/ ...")
            make_synthetic_la(root)
    n = args.iterations
    common = ["--root_path", str(root), "--patch_size", "48", "48", "32"] + (
        ["--device", args.device] if args.device else []
    )
    # A short run: the lr step, the lambda(t) ramp (10 steps of n/10 iterations) and the checkpoints scale with n.
    train_args = training_parser("", "demo_UAMT_unlabel", UAMTUnlabel).parse_args(
        [*common, "--exp", "demo_UAMT_unlabel", "--labelnum", str(args.labelnum), "--max_iterations", str(n),
         "--lr_step", str(max(n * 5 // 12, 1)), "--rampup_epoch_iters", str(max(n // 10, 1)),
         "--consistency_rampup", "10", "--save_every", str(n)]
    )  # fmt: skip
    test_args = testing_parser().parse_args(
        [*common, "--model", "demo_UAMT_unlabel", "--iteration", str(n), "--stride_xy", "16", "--stride_z", "8"]
    )
    run_guarded(lambda: (train(train_args, UAMTUnlabel), evaluate(test_args)), threads=args.threads)
    run = Path(train_args.model_dir) / train_args.exp
    print(f"\nTensorBoard: tensorboard --logdir {run / 'log'}\nPredictions and metrics.csv: {run / f'test_iter_{n}'}/")
    # The same checkpoint on the test cases as new data: predictions, uncertainty maps, overlays (README).
    print(
        f"Uncertainty maps: python3 predict.py --checkpoint {run / f'iter_{n}.pth'} --root_path {root} --split test "
        f"--stride_xy 16 --stride_z 8"
    )


if __name__ == "__main__":
    main()
