"""Every package on its floor: a package imports only packages below it (or itself), read from the source's own
import statements, so an arrow back up fails here rather than in a newcomer's head."""

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# Bottom to top; a package may import those on lower floors. training and evaluation share a floor and import
# neither each other's modules nor anything above them; scripts and tools at the top import anything.
FLOORS = {"utils": 0, "networks": 1, "dataloaders": 2, "methods": 3, "evaluation": 4, "training": 4}


def imported_packages(path: Path) -> set[str]:
    """The top-level names of the project packages that a file imports (absolute imports, anywhere in the file)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names & set(FLOORS) | names & {"benchmarks", "tools"}


def test_no_package_imports_one_above_or_beside_it():
    wrong = []
    for package, floor in FLOORS.items():
        for path in sorted((REPO / package).glob("*.py")):
            for name in imported_packages(path):
                if name != package and FLOORS.get(name, 99) >= floor:
                    wrong.append(f"{path.relative_to(REPO)} imports {name}")
    assert not wrong, wrong


def test_the_check_sees_an_arrow_back_up(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import os\nfrom training.loop import run_training\n\ndef f():\n    import evaluation.metrics\n")
    assert imported_packages(bad) == {"training", "evaluation"}
