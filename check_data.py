"""Check a dataset in the LA layout: lists, case files, shapes, dtypes (and with --check_data full, every voxel)."""

import argparse

from dataloaders.checks import check_dataset
from utils.training import run_guarded

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--root_path", default="data/LA")
    parser.add_argument("--patch_size", type=int, nargs=3, default=[112, 112, 80], metavar=("W", "H", "D"))
    parser.add_argument("--check_data", choices=["headers", "full"], default="headers")
    args = parser.parse_args()
    report = run_guarded(
        lambda: check_dataset(args.root_path, ("train", "test"), args.patch_size, args.check_data == "full")
    )
    print(f"ok: {args.root_path}: {report.describe()}")
