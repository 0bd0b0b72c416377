"""What every script's command line shares: a parser whose mistakes take two lines, not a page of usage, and the
check that --device names a device this torch can run on."""

from __future__ import annotations

import argparse
import difflib
import os
import platform
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn, TypeVar

import torch

from utils.errors import DataError
from utils.threads import set_threads

DEVICE_HELP = "cuda, cuda:1, cpu, ...; default: cuda when torch sees one, else cpu"


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """The description as written (the scripts' docstrings) and each flag's default after its help, unless the help
    already says what the default is or there is none to show (None, "")."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default:" in text or "(default" in text or action.default is None or action.default == "":
            return text
        return super()._get_help_string(action)


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are the message (with a "did you mean" for a mistyped flag) and one line
    pointing at --help, exit 2: the training scripts' usage alone is 30 lines, which buried the one that matters."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def parse_args(self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None):
        self._argv = list(sys.argv[1:] if args is None else args)  # for error(): which flags are unknown
        parsed, unknown = self.parse_known_args(args, namespace)
        if unknown:
            self.error(f"unrecognized arguments: {' '.join(unknown)}")
        return parsed

    def unknown_flags(self, argv: Sequence[str]) -> list[str]:
        """The --flags of `argv` that name none of this parser's options (not even as an abbreviation)."""
        options = [o for o in self._option_string_actions if o.startswith("--")]
        flags = []
        for token in argv:
            if token == "--":
                break
            flag = token.split("=", 1)[0]
            if token.startswith("--") and not any(o.startswith(flag) for o in options):
                flags.append(flag)
        return flags

    def did_you_mean(self, flags: Sequence[str]) -> str:
        """'; did you mean --x?' for the unknown flags that resemble one of this parser's ('' if none does)."""
        options = [o for o in self._option_string_actions if o.startswith("--")]
        guesses = {}
        for flag in flags:
            # --max-iterations is --max_iterations with the usual dashes
            close = difflib.get_close_matches("--" + flag[2:].replace("-", "_"), options, n=1, cutoff=0.6)
            if close:
                guesses[flag] = close[0]
        if not guesses:
            return ""
        if len(guesses) == 1:
            return f"; did you mean {next(iter(guesses.values()))}?"
        return "; did you mean " + ", ".join(f"{guess} (for {flag})" for flag, guess in guesses.items()) + "?"

    def error(self, message: str) -> NoReturn:
        unknown = self.unknown_flags(getattr(self, "_argv", []))
        guess = self.did_you_mean(unknown)
        if guess and not message.startswith("unrecognized arguments"):
            # A mistyped flag is the cause of what argparse reports first (e.g. "--checkpoint is required").
            message = f"unrecognized arguments: {' '.join(unknown)}"
        self.exit(2, f"error: {message}{guess}\n{self.prog} --help lists every flag\n")


def check_device(name: str) -> torch.device:
    """The device `--device name` names, refused in one line (DataError) when this torch cannot run on it, before a
    script reads or writes anything: a CUDA call on a CPU-only build fails deep inside torch with a long trace."""
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError) as error:
        raise DataError(f"--device {name}: not a device; use cpu, cuda or cuda:N") from error
    if device.type == "cuda":
        if not torch.backends.cuda.is_built():
            raise DataError(f"--device {name}: this torch has no CUDA; install a CUDA build or use --device cpu")
        count = torch.cuda.device_count()
        if count == 0:
            raise DataError(f"--device {name}: no CUDA device is visible (check the driver, CUDA_VISIBLE_DEVICES); "
                            f"or use --device cpu")  # fmt: skip
        if device.index is not None and device.index >= count:
            raise DataError(f"--device {name}: this machine has {count} CUDA device(s), cuda:0..cuda:{count - 1}")
    return device


T = TypeVar("T")


class RunStopped(Exception):
    """The run stopped on purpose (a signal, a non-finite loss); the message says what was kept."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


def run_guarded(job: Callable[[], T], threads: int | None = None) -> T:
    """Run a script's job; a data mistake (exit 2) or a deliberate stop (signal, non-finite loss) ends in one line
    on stderr, not a stack trace. `threads`: the script's --threads, set before any torch work (None: torch's)."""
    try:
        set_threads(threads)
        return job()
    except (DataError, RunStopped) as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(getattr(error, "exit_code", 2))


def machine_description(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}"
    cpu = platform.processor() or platform.machine()
    return f"{os.cpu_count()} CPU cores ({cpu}), {torch.get_num_threads()} torch threads, torch {torch.__version__}"
