"""Convert the raw LA 2018 challenge data (<raw>/<ID>/lgemri.nrrd + laendo.nrrd) into the h5 layout of --root_path.

python3 prepare_la_raw.py --raw_path "path/to/2018LA_Seg_Training Set" --out data/LA --test_list path/to/test.list

Each case is cropped around its mask as the UA-MT reference preprocessing does (dataloaders/raw_la.py), with margins
seeded by --seed and the case ID. Lists: test.list = the IDs of --test_list, else of <raw>/test.list when present and
--test_count is not given, else --test_count (default 20) cases drawn with --seed; train.list = every other converted
case, sorted (as the published train.list is).
"""

from dataloaders.raw_la import convert_dataset
from utils.cli import Parser, run_guarded

if __name__ == "__main__":
    parser = Parser(description=__doc__)
    parser.add_argument("--raw_path", required=True, help="folder with one <ID>/ folder per case")
    parser.add_argument("--out", default="data/LA", help="where to write the dataset (default data/LA)")
    parser.add_argument("--seed", type=int, default=1337, help="seed of the crop margins and of the test split")
    parser.add_argument("--ids", nargs="+", help="convert only these cases (default: every case folder)")
    split = parser.add_mutually_exclusive_group()
    split.add_argument("--test_count", type=int, help="test cases of a seeded split (default 20, or <raw>/test.list)")
    split.add_argument("--test_list", help="a file of test IDs, e.g. the published test.list of UA-MT")
    args = parser.parse_args()
    train, test = run_guarded(
        lambda: convert_dataset(args.raw_path, args.out, args.seed, args.ids, args.test_count, args.test_list)
    )
    print(f"wrote {len(train) + len(test)} cases to {args.out}: {len(train)} in train.list, {len(test)} in test.list")
