"""Every command the docs quote still names something that runs: each `python3 X.py` a file of the repository, each
`python3 -m M` a module that imports from the repository root, and each `python3 -m tools.run_table ...` a command line
its parser accepts (configs and groups that exist)."""

import importlib.util
import re
import shlex

import pytest
from conftest import REPO

from tools import run_table

DOCS = ["README.md", "RESULTS.md", *(str(p.relative_to(REPO)) for p in REPO.glob("benchmarks/**/README.md")),
        *(str(p.relative_to(REPO)) for p in REPO.glob("results/**/README.md"))]  # fmt: skip
# A module name ends the command's word (so that prose like "python3 -m tools.NAME" names none).
COMMAND = re.compile(r"python3 (-m [a-z_]\w*(?:\.[a-z_]\w*)*(?=[\s`]|$)|[\w./-]+\.py)")
STOP = re.compile(r"`|&&|\|\||[|;>#]|\$\(|\n(?!\s*--)")  # where a command in a code block ends


def quoted_commands() -> list[tuple[str, str]]:
    """(document, command text up to its end) for every python3 command of the docs."""
    found = []
    for doc in DOCS:
        text = (REPO / doc).read_text().replace("\\\n", " ")
        text = re.sub(r"python3\s+(-m\s+)?", lambda m: "python3 " + ("-m " if m.group(1) else ""), text)  # prose wraps
        for match in COMMAND.finditer(text):
            rest = text[match.end() :]
            # in prose a `command` ends at its closing backtick, whatever lines it wraps over
            end = (
                rest.index("`")
                if text[match.start() - 1] == "`"
                else (STOP.search(rest) or re.search("$", rest)).start()
            )
            found.append((doc, match.group(0) + rest[:end]))
    return found


def test_the_docs_quote_commands():
    commands = [c for _, c in quoted_commands()]
    assert sum("tools.run_table" in c for c in commands) >= 10 and any("tools.compare" in c for c in commands)


@pytest.mark.parametrize("doc, command", quoted_commands())
def test_quoted_command_names_something_that_runs(doc, command):
    target = COMMAND.match(command).group(1)
    if target.startswith("-m "):
        module = target[3:]
        if module.split(".")[0] in ("pip", "venv", "pytest"):
            return
        assert importlib.util.find_spec(module) is not None, f"{doc}: {command}"
    elif not target.startswith("../"):  # ../shared: the data's own scripts, outside the repository
        assert (REPO / target).is_file(), f"{doc}: {command}"
        # tools/ and benchmarks/ import from the repository root: run by path they would not find it
        assert not target.startswith(("tools/", "benchmarks/")), f"{doc}: {command}: run it as python3 -m"
    if target == "-m tools.run_table":
        words = [w for w in shlex.split(command.split("tools.run_table", 1)[1]) if not w.startswith("...")]
        words = [w for w in words if not re.fullmatch(r"<\w+>|S|G|\.\.\.", w)]  # placeholders of prose
        try:
            run_table.build_parser().parse_args(words)
        except SystemExit:
            pytest.fail(f"{doc}: run_table refuses {command!r}")
