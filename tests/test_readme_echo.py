"""README's "Your echocardiography frames" runs as written: its bash block, with only the variables at its top set to a
toy size, on generated CAMUS-like frames (4 classes, 4 frames a patient)."""

import csv
import os
import re
import subprocess
import sys
from pathlib import Path

from dataloaders.synthetic_echo import make_synthetic_echo

REPO = Path(__file__).resolve().parents[1]
SECTION = "## Your echocardiography frames"
# The block's variables and their toy values: 12 training patients (patient0010 labelled, 0011-0012 validate), 2 test
# patients, 40 x 48 frames resized to 32 x 32, 2 iterations.
TOY = {"VAL_FRAMES": "8", "SIZE": '"32 32"', "ITERATIONS": "2", "RAMPUP": "1"}


def readme_block() -> str:
    """The first ```bash block of the section."""
    text = (REPO / "README.md").read_text()
    section = text[text.index(SECTION) :]
    section = section[: section.index("\n## ", len(SECTION))]
    return re.search(r"```bash\n(.*?)```", section, re.S).group(1)


def toy_block(block: str, data: Path) -> str:
    """The block with DATA and the TOY variables reassigned; every command line untouched."""
    lines = block.splitlines()
    values = TOY | {"DATA": str(data)}
    for name, value in values.items():
        (i,) = [k for k, line in enumerate(lines) if line.startswith(f"{name}=")]  # each assigned once, in the block
        lines[i] = f"{name}={value}"
    return "\n".join(lines) + "\n"


def test_readme_echo_section_runs_as_written(tmp_path):
    data = make_synthetic_echo(tmp_path / "camus", n_train=48, n_test=8, labelled=48, shape=(40, 48), seed=2,
                               num_classes=4, frames_per_patient=4)  # fmt: skip
    block = readme_block()
    script = toy_block(block, data)
    assert len(script.splitlines()) == len(block.splitlines())
    work = tmp_path / "work"  # the commands' cwd stands for the repository: its scripts linked, model/ written here
    work.mkdir()
    for path in REPO.glob("*.py"):
        (work / path.name).symlink_to(path)
    python = Path(tmp_path / "bin")
    python.mkdir()
    # The block's python3 is this interpreter. A wrapper, not a symlink: a virtual environment's python is found by
    # the pyvenv.cfg beside the path it is called by, so a symlink elsewhere would run the base interpreter.
    wrapper = python / "python3"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    wrapper.chmod(0o755)
    env = os.environ | {"PATH": f"{python}:{os.environ['PATH']}", "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=work, env=env, capture_output=True,
                            text=True, timeout=900)  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    # Whole patients everywhere: patient0010 labelled (4 frames), patients 0011-0012 validate.
    assert (work / "camus_labelled.list").read_text().split() == [f"patient0010_{k}" for k in range(4)]
    val = (work / "data" / "camus_val" / "test.list").read_text().split()
    assert val == [f"patient{p:04d}_{k}" for p in (11, 12) for k in range(4)]
    for run in ("camus_val_sup", "camus_val_uamt", "camus_uamt"):
        assert (work / "model" / run / "test_iter_2" / "metrics.csv").is_file()
    assert (work / "camus_table.md").is_file()
    out = work / "model" / "camus_uamt" / "test_iter_2_pred"
    with open(out / "areas.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["ID"] for r in rows] == [f"patient{p:04d}_{k}" for p in (13, 14) for k in range(4)]
    assert "LV cavity (px)" in rows[0] and rows[0]["LV cavity (mm2)"] == ""  # PNG frames: no spacing
    assert (out / "patient0013_0_overlay.png").is_file() and (out / "patient0013_0_uncertainty.tif").is_file()
