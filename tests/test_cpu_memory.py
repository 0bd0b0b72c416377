"""The allocator setting behind CPU speed: freed large blocks are reused instead of paged in again."""

import resource
import subprocess
import sys

import pytest
from conftest import REPO

PROBE = """
import resource, sys, torch
sys.path.insert(0, {repo!r})
from utils.cpu_memory import reuse_freed_memory
applied = reuse_freed_memory() if {reuse} else False
block = 64 * 2**20 // 4  # 64 MiB of float32: above glibc's largest mmap threshold (32 MiB)
torch.ones(block).sum(); torch.ones(block).sum()  # allocate, touch, free; the second may reuse the first
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    torch.ones(block).sum()
print(applied, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def page_faults(reuse: bool) -> tuple[bool, int]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE.format(repo=str(REPO), reuse=reuse)], capture_output=True, text=True, check=True
    ).stdout.split()
    return out[0] == "True", int(out[1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_freed_blocks_are_reused_without_page_faults():
    pages = 5 * 64 * 2**20 // resource.getpagesize()
    applied, faults = page_faults(reuse=True)
    assert applied
    assert faults < 0.05 * pages  # the five blocks come from memory already paged in
    # The control: glibc's default maps and unmaps each block, so every page faults again.
    _, default_faults = page_faults(reuse=False)
    assert default_faults > 0.5 * pages
