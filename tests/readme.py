"""README's shell commands, as the docs tests read them (unit: flags and make targets;
integration: run against the lab)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def shell_blocks(text: str) -> Iterator[str]:
    for m in re.finditer(r"^```(?:sh|bash|shell|console)\n(.*?)^```", text, re.S | re.M):
        yield m.group(1)


def commands(text: str) -> list[str]:
    """One command per logical line (backslash continuations joined), comments dropped."""
    out = []
    for block in shell_blocks(text):
        for line in block.replace("\\\n", " ").splitlines():
            line = re.sub(r"(^|\s)#.*$", "", line).strip()
            if line:
                out.append(line)
    return out


README_COMMANDS = commands(README.read_text())
