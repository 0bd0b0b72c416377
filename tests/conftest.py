import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
# CI lays the shared data beside the clone; users won't have it and those tests skip.
SHARED_LA = REPO.parent / "shared" / "data" / "LA"
SHARED_HC18 = REPO.parent / "shared" / "data" / "HC18"

from dataloaders.synthetic import make_synthetic_la  # noqa: E402

SMALL_PATCH = ["32", "32", "32"]


def run_script(script: str, *args, cwd, timeout: float = 300) -> subprocess.CompletedProcess:
    """One of the repository's scripts in a fresh interpreter, as a user runs it; output captured as text."""
    return subprocess.run(
        [sys.executable, str(REPO / script), *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory) -> Path:
    """8 training and 2 test cases of 36..44 x 36..44 x 34..40 voxels."""
    root = tmp_path_factory.mktemp("synthetic_LA")
    return make_synthetic_la(root, n_train=8, n_test=2, shape_range=((36, 36, 34), (44, 44, 40)), seed=3)
