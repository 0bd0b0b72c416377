"""The allocator setting behind CPU speed: freed large blocks are reused instead of paged in again."""

import resource
import subprocess
import sys

import pytest
from conftest import REPO

ROUNDS = 30
PROBE = """
import resource, sys, torch
sys.path.insert(0, {repo!r})
from utils.cpu_memory import reuse_freed_memory
applied = reuse_freed_memory() if {reuse} else False
block = 64 * 2**20 // 4  # 64 MiB of float32: above glibc's largest mmap threshold (32 MiB)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range({rounds}):  # allocate, touch, free: what every operator of a 3D network does with its output
    torch.ones(block).sum()
print(applied, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def page_faults(reuse: bool) -> tuple[bool, int]:
    probe = PROBE.format(repo=str(REPO), reuse=reuse, rounds=ROUNDS)
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.split()
    return out[0] == "True", int(out[1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_freed_blocks_are_reused_instead_of_paged_in_again():
    block_pages = 64 * 2**20 // resource.getpagesize()
    # glibc's default maps and unmaps each block: every page of every block faults again.
    _, default_faults = page_faults(reuse=False)
    assert default_faults > 0.9 * ROUNDS * block_pages
    # Reused: the heap grows a few times while it settles (small allocations split freed blocks), then no faults.
    applied, faults = page_faults(reuse=True)
    assert applied
    assert faults < 0.5 * default_faults
