"""How far the digest runs' logged curves move under other CPU kernels, and under small real changes of a method:
the measurement behind tests/method_digest.py's CURVE_BOUNDS (the cross-machine comparison must pass the first and
catch the second).

    python3 -m tools.digest_drift        # ~4 min on 2 CPU cores; one row per variant

Other kernels are forced on this machine, as a CPU of another generation or vendor picks them: oneDNN's convolutions
at AVX2 (ONEDNN_MAX_CPU_ISA; on an AVX-512 CPU that changes the blocking and the rounding) and torch's own vector
kernels at AVX2 (ATEN_CPU_CAPABILITY). An EMA decay change is not listed: alpha = min(1 - 1/(t + 1), decay) ignores
it for the first 50 iterations.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from tests.method_digest import CURVE_BOUNDS, curve_deviations, synthetic_root, train_and_digest, within_bounds

KERNELS = {
    "oneDNN at AVX2": {"ONEDNN_MAX_CPU_ISA": "AVX2"},
    "oneDNN and torch at AVX2": {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"},
}
CHANGES = {
    "lr +1 %": ("--base_lr", "0.0101"),
    "lr +10 %": ("--base_lr", "0.011"),
    "lambda x1.1": ("--consistency", "0.11"),
    "T 8 -> 6": ("--mc_passes", "6"),
    "mask off": ("--uncertainty_mask", "0"),
    "seed 8": ("--seed", "8"),
}
UAMT_ONLY = {"lambda x1.1", "T 8 -> 6", "mask off"}
NAMES = ("supervised", "uamt", "uamt_unlabel")


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = synthetic_root(Path(tmp) / "data")
        base = {name: train_and_digest(name, root, Path(tmp) / f"base_{name}") for name in NAMES}
        its = list(CURVE_BOUNDS)
        bounds = ", ".join(f"{b:g}" for b in CURVE_BOUNDS.values())
        print("| variant | run | " + " | ".join(f"iteration {i}" for i in its) + f" | passes ({bounds}) |")
        print("|---|---|" + "---|" * len(its) + "---|")
        rows = [(label, name, (), env) for label, env in KERNELS.items() for name in NAMES]
        rows += [(label, name, flags, None) for label, flags in CHANGES.items() for name in NAMES
                 if name != "supervised" or label not in UAMT_ONLY]  # fmt: skip
        for i, (label, name, flags, env) in enumerate(rows):
            now = train_and_digest(name, root, Path(tmp) / f"v{i}", flags=flags, env=env)
            deviations = curve_deviations(now["curves"], base[name]["curves"])
            cells = " | ".join(f"{deviations[i][0]:.1e}" for i in its)
            print(f"| {label} | {name} | {cells} | {within_bounds(deviations)} |", flush=True)


if __name__ == "__main__":
    main()
