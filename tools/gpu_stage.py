"""What the GPU scripts share (tools/gpu_check.py, tools/gpu_paper_row.py): staging packed LA cases and
wheels here for the GPU machine, restoring them there, running the project's scripts, reading the training log.

The GPU machine has torch, h5py, scipy, numpy, protobuf, packaging and tqdm but not the pure-Python packages below;
they travel as wheels in .whl/. The device tool carries at most 64 MiB of files, the repository included.
"""

from __future__ import annotations

import json
import re
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WHEELS = REPO / ".whl"
SHARED_LA = REPO.parent / "shared" / "data" / "LA"
MISSING_PACKAGES = ["medpy==0.5.2", "nibabel==5.4.2", "tensorboardX==2.6.5"]
RESTORE_FILES = ("restore.py", "manifest.sha256", "train.list", "test.list")
STAGE_FILE = "stage.json"  # the staged IDs by role
INSTALL = "python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site"


def case_file(case_id: str, folder: Path = SHARED_LA) -> Path:
    return folder / f"{case_id}.npz.xz"


def shared_lists() -> tuple[list[str], list[str]]:
    """train.list and test.list of the shared LA data, in their order (the first 16 of train.list: the paper's
    labelled cases)."""
    if not SHARED_LA.is_dir():
        sys.exit(f"{SHARED_LA} is not here: stage where the packed LA cases are")
    return [(SHARED_LA / f"{split}.list").read_text().split() for split in ("train", "test")]


def build_wheels() -> float:
    """Build the missing packages' wheels into .whl/ (medpy comes as source only); their size in MiB."""
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(WHEELS), *MISSING_PACKAGES],
                   check=True)  # fmt: skip
    return folder_mib(WHEELS)


def stage_cases(stage: Path, roles: dict[str, list[str]]) -> float:
    """Copy restore.py, its manifest, the lists and the packed cases of every role (e.g. train, test) into `stage`,
    with stage.json naming them; the folder's size in MiB."""
    if stage.exists():
        shutil.rmtree(stage)
    stage.mkdir()
    for name in RESTORE_FILES:
        shutil.copy(SHARED_LA / name, stage / name)
    for case_id in (i for ids in roles.values() for i in ids):
        shutil.copy(case_file(case_id), case_file(case_id, stage))
    (stage / STAGE_FILE).write_text(json.dumps(roles, indent=1) + "\n")
    return folder_mib(stage)


def folder_mib(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 2**20


def staged_ids(stage: Path) -> dict[str, list[str]]:
    path = stage / STAGE_FILE
    if not path.is_file():
        sys.exit(
            f"{path} is missing: stage the cases first (--stage, where ../shared/data/LA is) and carry {stage.name}"
        )
    return json.loads(path.read_text())


def restore(stage: Path, root: Path, ids: list[str]) -> None:
    """The staged cases as h5 files under `root` (restore.py writes train.list and test.list of them, in the shared
    lists' order)."""
    run([sys.executable, str(stage / "restore.py"), str(root), "--ids", *ids], what="restoring the staged cases")


def run(command: list[str], what: str) -> str:
    """Run one of the project's scripts from the repository root; on failure stop this script (non-zero exit) with
    `what` and the end of its output."""
    print("$ " + " ".join(["python3", *command[1:]] if command[0] == sys.executable else command), flush=True)
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    if result.returncode:
        tail = (result.stdout[-2000:] + result.stderr[-2000:]).strip()
        sys.exit(f"{what} failed (exit {result.returncode}):\n{tail}")
    return result.stdout


def iteration_seconds(log: str) -> list[float]:
    """Wall seconds of each training iteration, as the loop logs them in log.txt."""
    return [float(s) for s in re.findall(r"time/iteration_s ([0-9.]+)", log)]


def losses(log: str) -> list[float]:
    return [float(s) for s in re.findall(r"loss/loss ([0-9.eE+-]+|nan|inf)", log)]


def steady_ms(log: str, skip: int = 10) -> float:
    """Median milliseconds per iteration after the first `skip` (start-up: cudnn.benchmark, allocator, workers)."""
    seconds = iteration_seconds(log)
    return 1000 * statistics.median(seconds[skip:] if len(seconds) > skip else seconds)
