"""Check a dataset (LA h5, NIfTI or 2D image layout): lists, case files, shapes, dtypes (and with --check_data full,
every voxel: finite images, labels in 0..K-1)."""

from dataloaders.checks import check_dataset
from dataloaders.sources import open_source
from utils.cli import Parser, run_guarded

if __name__ == "__main__":
    parser = Parser(description=__doc__)
    parser.add_argument("--root_path", default="data/LA", help="the dataset folder (LA h5, NIfTI or 2D layout)")
    parser.add_argument(
        "--patch_size", type=int, nargs="+", default=[112, 112, 80], metavar="SIDE", help="cases not larger are noted"
    )
    parser.add_argument("--num_classes", type=int, default=2, help="K: labels must lie in 0..K-1")
    parser.add_argument("--center_crop", type=int, nargs=2, default=None, metavar=("ROWS", "COLS"), help="2D images")
    parser.add_argument("--resize", type=int, nargs=2, default=None, metavar=("ROWS", "COLS"), help="2D images")
    parser.add_argument(
        "--check_data", choices=["headers", "full"], default="headers", help="file headers, or every voxel"
    )
    args = parser.parse_args()

    def check():
        source = open_source(args.root_path, args.num_classes, args.center_crop, args.resize)
        return check_dataset(source, ("train", "test"), args.patch_size, args.check_data == "full", args.num_classes)

    report = run_guarded(check)
    print(f"ok: {args.root_path}: {report.describe()}")
