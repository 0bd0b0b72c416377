"""fp32 against bf16 in one run: seconds per UA-MT-unlabel training iteration at 112x112x80 and at 48x48x32, seconds
per test case at both scales, and the peak resident memory (ru_maxrss) of each measurement.

    python3 -m tools.time_precision                       # CPU: about 8 minutes on 2 cores, on a quiet machine
    python3 -m tools.time_precision --small               # the 48x48x32 rows only (about 1 minute)
    python3 -m tools.time_precision --device cuda --iterations 20 --cases 3

Each measurement is tools/time_training.py or tools/time_testing.py run in its own process with
--precision fp32 or bf16 (so each peak RSS is its own); the table is printed and written to --out. Where bf16 is not
native (utils/precision.py: no avx512_bf16/amx_bf16) the bf16 column is left out and the reason printed. Training
iterations: median after the first (start-up); test cases: median, after one untimed window.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from utils.precision import bf16_support, cpu_flags

REPO = Path(__file__).resolve().parents[1]

# (row label, script, flags): the paper's scale, then the LA-half scale of RESULTS.md.
MEASUREMENTS = [
    ("training iteration, 112x112x80", "time_training", ["--patch_size", "112", "112", "80"]),
    ("training iteration, 48x48x32", "time_training", ["--patch_size", "48", "48", "32"]),
    ("test case 190x142x88, windows 112x112x80 at 18/4", "time_testing",
     ["--shape", "190", "142", "88", "--patch_size", "112", "112", "80", "--stride_xy", "18", "--stride_z", "4"]),
    ("test case 95x71x44, windows 48x48x32 at 9/2", "time_testing",
     ["--shape", "95", "71", "44", "--patch_size", "48", "48", "32", "--stride_xy", "9", "--stride_z", "2"]),
]  # fmt: skip
SMALL = ("48x48x32",)  # --small keeps the rows whose label holds this


def machine() -> str:
    name = platform.processor() or platform.machine()
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").is_file() else []:
        if line.startswith("model name"):
            name = line.split(":", 1)[1].strip()
            break
    return f"{name}, {torch.get_num_threads()} torch threads, torch {torch.__version__}"


def measure(script: str, flags: list[str], precision: str, args: argparse.Namespace) -> dict | str:
    """The figures of one benchmark process, or the last line it printed when it failed."""
    count = ["--iterations", str(args.iterations)] if script == "time_training" else ["--cases", str(args.cases)]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "figures.json"
        command = [sys.executable, "-m", f"tools.{script}", *flags, *count, "--device", args.device,
                   "--precision", precision, "--json", str(out)]  # fmt: skip
        print("$ " + " ".join(["python3", *command[1:]]), flush=True)
        result = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
        lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
        if result.returncode or not out.is_file():
            return lines[-1] if lines else f"exit {result.returncode}"
        print("  " + next((line for line in lines if "median" in line), ""), flush=True)
        return json.loads(out.read_text())


def table(rows: list[tuple[str, dict[str, dict | str]]], precisions: list[str]) -> str:
    header = ["measurement", *(f"{p} s" for p in precisions)]
    header += ["bf16 speed-up"] if len(precisions) == 2 else []
    header += [f"{p} peak RSS GiB" for p in precisions]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for label, figures in rows:
        ok = {p: f for p, f in figures.items() if isinstance(f, dict)}
        cells = [label]
        for p in precisions:
            f = ok.get(p)
            cells.append(f"{f['median_s']:.2f} ({f['min_s']:.2f}-{f['max_s']:.2f}, n={f['n']})" if f else "failed")
        if len(precisions) == 2:
            cells.append(f"{ok['fp32']['median_s'] / ok['bf16']['median_s']:.2f}x" if len(ok) == 2 else "")
        cells += [f"{ok[p]['peak_rss_gib']:.2f}" if p in ok else "" for p in precisions]
        lines.append("| " + " | ".join(cells) + " |")
    failures = [f"{label}, {p}: {f}" for label, figures in rows for p, f in figures.items() if isinstance(f, str)]
    return "\n".join(lines + [f"failed: {line}" for line in failures])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--iterations", type=int, default=4, help="training iterations per measurement (first dropped)")
    parser.add_argument("--cases", type=int, default=1, help="test cases per measurement")
    parser.add_argument("--small", action="store_true", help="only the 48x48x32 rows")
    parser.add_argument("--out", default="model/precision_time.md", help="the table, with the machine")
    args = parser.parse_args()

    native, why = bf16_support(args.device)
    precisions = ["fp32", "bf16"] if native else ["fp32"]
    flags = cpu_flags() or frozenset()
    about = [
        f"machine: {machine()}; device {args.device}",
        f"bf16: {'native' if native else 'not timed'} ({why}); CPU flags: "
        + (", ".join(sorted(f for f in flags if "bf16" in f or f in ("avx2", "avx512f", "amx_tile"))) or "-"),
    ]
    print("\n".join(about), flush=True)
    rows = []
    for label, script, flags_ in MEASUREMENTS:
        if args.small and not any(size in label for size in SMALL):
            continue
        rows.append((label, {p: measure(script, flags_, p, args) for p in precisions}))
    report = "\n".join(about) + "\n\n" + table(rows, precisions) + "\n"
    print("\n" + report)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(report)
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
