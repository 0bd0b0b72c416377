"""Write the half-resolution copy of the LA data that the CPU-scale benchmark trains on (RESULTS.md).

python3 prepare_la_half.py --src data/LA --dst data/LA_half
"""

from dataloaders.resample import resample_dataset
from utils.cli import Parser, run_guarded

if __name__ == "__main__":
    parser = Parser(description=__doc__)
    parser.add_argument("--src", default="data/LA", help="an LA-layout dataset folder")
    parser.add_argument("--dst", default="data/LA_half", help="where to write the copy")
    parser.add_argument("--factor", type=float, default=0.5, help="scale of every side")
    args = parser.parse_args()
    count = run_guarded(lambda: resample_dataset(args.src, args.dst, args.factor))
    print(f"wrote {count} cases to {args.dst}")
