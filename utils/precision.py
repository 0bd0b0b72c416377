"""--precision fp32|bf16|auto: bfloat16 autocast of the networks' forwards where the hardware computes bf16 natively.

Only the V-Net forwards (and their backward) run under autocast; their logits are cast to float32 at once, so the
softmax, the losses, the MC-dropout uncertainty, the consistency mask, the sliding-window average and the EMA of the
weights stay float32. fp32 (the default) leaves every computation exactly as the release's.

"Native" bf16 on a CPU means instructions that compute in bf16: avx512_bf16 or amx_bf16 on x86 (Cooper Lake,
Sapphire Rapids and later, Zen 4 and later), the bf16 extension on Arm. Elsewhere oneDNN emulates bf16 through
float32, which on this project's AVX2 machine made a training step 22x slower. Neither of torch's own answers says
this: torch.backends.cpu.get_cpu_capability() reports 'AVX512' with or without bf16, and
torch.ops.mkldnn._is_mkldnn_bf16_supported() is true on any AVX-512 core CPU, where bf16 is emulated. So the flags
the kernel reports in /proc/cpuinfo decide, and torch's check must agree.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from utils.errors import DataError

PRECISIONS = ("fp32", "bf16", "auto")
CPUINFO = Path("/proc/cpuinfo")
X86_BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # instructions that multiply bf16 (AVX512-BF16 dot products, AMX tiles)
ARM_BF16_FEATURE = "bf16"  # Armv8.6 BF16 (BFDOT, BFMMLA)


def add_precision_flag(parser: argparse.ArgumentParser) -> None:
    """--precision for training, test_LA.py and predict.py."""
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="fp32",
        help="fp32: the release's numerics; bf16: bfloat16 autocast of the network forwards (logits, losses, "
        "softmax, uncertainty, EMA stay float32), refused where bf16 is not native; auto: bf16 on CUDA and on CPUs "
        "with avx512_bf16/amx_bf16, else fp32",
    )


def cpu_flags(cpuinfo: Path = CPUINFO) -> frozenset[str] | None:
    """The feature flags of the first processor in /proc/cpuinfo ('flags' on x86, 'Features' on Arm); None where
    the file is missing (not Linux) or has no such line."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return None


def cpu_bf16_support(cpuinfo: Path = CPUINFO) -> tuple[bool, str]:
    """(native, why): whether this CPU computes bf16 natively and torch's oneDNN can use it, and a phrase saying
    what decided it."""
    flags = cpu_flags(cpuinfo)
    if flags is None:
        return False, f"{cpuinfo} is not readable, so native bf16 cannot be confirmed on this system"
    native = sorted(flags & {*X86_BF16_FLAGS, ARM_BF16_FEATURE})
    if not native:
        return False, (
            "this CPU has no native bf16 arithmetic (no avx512_bf16, amx_bf16 or Arm bf16 among its "
            f"{cpuinfo} flags): bf16 would be emulated, slower than fp32"
        )
    if not onednn_bf16():
        return False, f"the CPU reports {', '.join(native)}, but this torch build's oneDNN cannot run bf16 here"
    return True, f"CPU flags {', '.join(native)}"


def onednn_bf16() -> bool:
    """Whether torch's oneDNN (which runs the CPU's bf16 convolutions) is built in and takes bf16 on this CPU;
    necessary for native bf16, not sufficient (see the module's docstring)."""
    if not torch.backends.mkldnn.is_available():
        return False
    check = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)  # private; absent in some builds
    return check is None or bool(check())


def cuda_bf16_support(device: torch.device) -> tuple[bool, str]:
    """(native, why) for a CUDA device: compute capability 8.0 (Ampere) or later."""
    name = torch.cuda.get_device_name(device)
    try:
        native = torch.cuda.is_bf16_supported(including_emulation=False)
    except TypeError:  # torch < 2.3 has no including_emulation and answers for native support
        native = torch.cuda.is_bf16_supported()
    major, minor = torch.cuda.get_device_capability(device)
    return native, f"{name} (compute capability {major}.{minor}) " + (
        "computes bf16" if native else "has no bf16 tensor cores (8.0 or later needed)"
    )


def bf16_support(device: torch.device | str) -> tuple[bool, str]:
    """(native, why): whether bf16 autocast on `device` runs on bf16 hardware."""
    device = torch.device(device)
    if device.type == "cpu":
        return cpu_bf16_support()
    if device.type == "cuda":
        return cuda_bf16_support(device)
    return False, f"bf16 autocast is only set up for cpu and cuda, not {device.type}"


def resolve_precision(requested: str, device: torch.device | str, training_patch: Sequence[int] | None = None) -> str:
    """'fp32' or 'bf16': what runs for --precision `requested` on `device`. An explicit bf16 where it is not native
    is refused (DataError: one line, exit 2) rather than run many times slower. For training (`training_patch`
    given), bf16 must also pass `bf16_gradient_problem`; `auto` then falls back to fp32 with a note."""
    if requested not in PRECISIONS:
        raise DataError(f"--precision {requested}: choose one of {', '.join(PRECISIONS)}")
    if requested == "fp32":
        return "fp32"
    native, why = bf16_support(device)
    if native and training_patch is not None:
        problem = bf16_gradient_problem(training_patch, device)
        if problem:
            native, why = False, problem
            if requested == "auto":
                print(f"note: --precision auto trains in fp32: {problem}", file=sys.stderr)
    if native:
        return "bf16"
    if requested == "auto":
        return "fp32"
    raise DataError(f"--precision bf16 on {device}: {why}; use --precision fp32 (or auto: bf16 only where native)")


def bf16_gradient_problem(patch_size: Sequence[int], device: torch.device | str, channels: int = 16) -> str | None:
    """Check the weight gradient of a 3x3(x3) convolution under bf16 autocast against float32 at the spatial size of
    each V-Net level (patch / 1, 2, 4, 8, 16); a description of the first that disagrees, else None.

    Why: torch 2.13's oneDNN on an AVX512-BF16 CPU returns a wrong bf16 weight gradient for a padded 3x3x3
    convolution of 16 or more output channels whenever the first spatial side is 2 (e.g. the bottleneck of a
    32-voxel-wide patch: cosine to float32 0.0-0.5, or NaN), while forward and input gradient are right. Training
    would go on with garbage gradients, so this is checked, not assumed. Rounding alone keeps the cosine above
    0.9999; the random tensors come from a private generator (the run's random stream is untouched)."""
    device = torch.device(device)
    convolution = {3: F.conv3d, 2: F.conv2d}[len(patch_size)]
    generator = torch.Generator().manual_seed(0)
    for level in range(5):
        shape = [side // 2**level for side in patch_size]
        x, out_grad = (torch.randn(1, channels, *shape, generator=generator).to(device) for _ in range(2))
        weight = torch.randn(channels, channels, *[3] * len(shape), generator=generator).to(device) / 10
        grads = []
        for precision in ("fp32", "bf16"):
            w = weight.clone().requires_grad_()
            with autocast(precision, device):
                y = convolution(x, w, padding=1)
            (y.float() * out_grad).sum().backward()
            grads.append(w.grad.flatten())
        cosine = F.cosine_similarity(grads[0], grads[1], dim=0).item()
        if not cosine > 0.99:  # NaN too
            size = "x".join(map(str, shape))
            return (
                f"this torch build computes wrong bf16 weight gradients for a 3x3 convolution at {size} voxels "
                f"(V-Net level {level} of patch {'x'.join(map(str, patch_size))}; cosine to float32 {cosine:.2f}); "
                "another --patch_size may avoid it"
            )
    return None


def autocast(precision: str, device: torch.device | str) -> AbstractContextManager:
    """bfloat16 autocast on `device` for 'bf16', nothing for 'fp32'. Around inference code whose only
    autocast-eligible operations are the network's (its output is cast to float32 before the softmax)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)


class Bf16Forward:
    """Calls a network under bf16 autocast and returns float32 logits, so that whatever follows (softmax, losses,
    uncertainty) is float32 outside autocast. Every other attribute (training, parameters(), modules()) is the
    network's own."""

    def __init__(self, net: nn.Module, device_type: str):
        self.net, self.device_type = net, device_type

    def __call__(self, *inputs: torch.Tensor) -> torch.Tensor:
        with torch.autocast(self.device_type, dtype=torch.bfloat16):
            output = self.net(*inputs)
        return output.float()

    def forward_fp(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The network's feature-perturbation forward (networks/: clean and perturbed logits) under the same autocast,
        float32 out."""
        with torch.autocast(self.device_type, dtype=torch.bfloat16):
            clean, perturbed = self.net.forward_fp(*inputs)
        return clean.float(), perturbed.float()

    def __getattr__(self, name: str) -> Any:
        if name == "net":  # not set yet (copy, pickle): no recursion
            raise AttributeError(name)
        return getattr(self.net, name)


def cast_forward(net: nn.Module, precision: str, device: torch.device | str) -> nn.Module | Callable:
    """What to call for `net`'s forward: `net` itself for fp32 (the release's code path, untouched), a
    `Bf16Forward` for bf16. State dicts, the optimiser and the EMA keep using `net`."""
    return net if precision == "fp32" else Bf16Forward(net, torch.device(device).type)
