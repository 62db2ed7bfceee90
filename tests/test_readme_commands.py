"""Every ``livesr`` command of README.md runs as written (issue 16, "a newcomer's path").

What is run
-----------
The README's fenced shell blocks (```` ```bash ````, ``sh``, ``shell``, ``console``)
are parsed in order. Each line is one shell command line; a trailing ``# comment`` is
dropped and ``a && b`` is split. Every part whose first word is ``livesr`` runs, in
README order, all in one scratch folder (later commands use what earlier ones wrote:
``livesr replay livesr-demo/raw.ome.zarr`` replays the quick start's run). Install
parts (``python -m pip install ...``) and other programs are not run: the test runs
in the environment the README's install line makes (``pip install ".[test]"``).

Marking a block that cannot run here
------------------------------------
An HTML comment on the line(s) just before a block (blank lines between are fine)
marks the whole block; it is invisible in the rendered README::

    <!-- readme-test: skip (WHY) -->          e.g. slow benchmarks, the test suite
    <!-- readme-test: needs WHAT -->          e.g. running pipeline, a display,
                                              a GPU, Micro-Manager hardware

Both skip every command of the block, reported with the reason. Use ``needs`` for
commands that need something the test machine lacks (a running ``livesr run
--listen`` for ``livesr ctl``, a desktop for ``--viewer``), ``skip`` for any other
reason. Put commands that can run in an unmarked block of their own, and keep them
short enough to run here as written (``--frames 200``, not 5000): there are no
per-command overrides.

How commands run
----------------
``bash -c LINE`` with a timeout (:data:`TIMEOUT_S`) in the scratch folder, where
``examples/`` links to the repository's (the README's example files must exist),
and with ``livesr`` and ``python`` on ``PATH`` resolving to this interpreter
(``python -m livesr.stream.cli``, the ``livesr`` console script's entry point).
Each must exit 0, and write what it names: ``--output DIR`` / ``-o DIR`` must exist
and not be empty; a ``livesr run`` or ``livesr replay`` folder must hold
``summary.json`` (a run also ``preview.png``); a ``livesr run`` without
``--output`` must create exactly one new ``livesr-out-*`` folder. The files the quick
start names are checked in its folder.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
#: longest a README command may take, s
TIMEOUT_S = 300
SHELL_LANGS = {"bash", "sh", "shell", "console"}
_MARK = re.compile(r"<!--\s*readme-test:\s*(skip|needs)\b\s*(.*?)\s*-->")
_FENCE = re.compile(r"^```\s*([\w-]*)\s*$")
#: what the quick start says its folder holds
QUICKSTART_FILES = (
    "raw.ome.zarr",
    "sr.ome.zarr",
    "drift.csv",
    "windows.csv",
    "summary.json",
    "config.toml",
    "preview.png",
)


@dataclass(frozen=True)
class Command:
    """One ``livesr`` command of the README."""

    line: int  # 1-based line in README.md
    text: str
    skip: str | None  # why it does not run here, None: it runs

    @property
    def id(self) -> str:
        return f"L{self.line}:{' '.join(self.text.split()[:3])}"


def _strip_comment(line: str) -> str:
    """``line`` without a trailing ``# comment`` (quotes respected)."""
    quote: str | None = None
    for i, ch in enumerate(line):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip()
    return line.rstrip()


def _split_and(line: str) -> list[str]:
    """``a && b`` -> [a, b] (outside quotes and ``$(...)``)."""
    parts, cur, quote, depth, i = [], [], None, 0, 0
    while i < len(line):
        ch = line[i]
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif line.startswith("$(", i):
            depth += 1
        elif ch == ")" and depth:
            depth -= 1
        elif line.startswith("&&", i) and depth == 0:
            parts.append("".join(cur).strip())
            cur, i = [], i + 2
            continue
        cur.append(ch)
        i += 1
    parts.append("".join(cur).strip())
    return [p for p in parts if p]


def readme_commands(text: str) -> list[Command]:
    """The ``livesr`` commands of the README's shell blocks (module docstring)."""
    cmds: list[Command] = []
    mark: str | None = None
    lang: str | None = None  # inside a block: its language
    for n, raw in enumerate(text.splitlines(), start=1):
        fence = _FENCE.match(raw.strip())
        if lang is None:
            if fence:
                lang, skip = fence.group(1) or "", mark
                mark = None
            elif m := _MARK.search(raw):
                kind, what = m.group(1), m.group(2).strip()
                mark = (
                    f"needs {what}" if kind == "needs" else (what.strip("()") or "skip")
                )
            elif raw.strip():
                mark = None  # a mark applies to the block right after it only
            continue
        if fence:
            lang = None
            continue
        if lang not in SHELL_LANGS:
            continue
        line = _strip_comment(raw.strip().removeprefix("$ "))
        for part in _split_and(line):
            if part.split()[0] == "livesr":
                cmds.append(Command(n, part, skip))
    return cmds


COMMANDS = readme_commands(README.read_text(encoding="utf-8"))


def test_the_readme_has_commands_to_run() -> None:
    runnable = [c for c in COMMANDS if c.skip is None]
    assert len(runnable) >= 10, [c.text for c in COMMANDS]
    # the quick start is the first one, as a newcomer meets it
    assert runnable[0].text.startswith("livesr run --output livesr-demo")


def test_the_parser_reads_marks_comments_and_chains() -> None:
    text = "\n".join(
        [
            "```bash",
            "python -m pip install . && livesr run --frames 5   # comment",
            "livesr sim -o 'a # b'",
            "```",
            "<!-- readme-test: needs running pipeline -->",
            "",
            "```bash",
            "livesr ctl ipc:///x status",
            "```",
            "```python",
            "livesr = 1",
            "```",
            "<!-- readme-test: skip (slow) -->",
            "text between: the mark is dropped",
            "```sh",
            "livesr run --mm-config \"$(python -c 'print(1)')\" && livesr backends",
            "```",
        ]
    )
    got = [(c.line, c.text, c.skip) for c in readme_commands(text)]
    assert got == [
        (2, "livesr run --frames 5", None),
        (3, "livesr sim -o 'a # b'", None),
        (8, "livesr ctl ipc:///x status", "needs running pipeline"),
        (16, "livesr run --mm-config \"$(python -c 'print(1)')\"", None),
        (16, "livesr backends", None),
    ]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """The scratch folder and the environment the commands run in."""
    work = tmp_path_factory.mktemp("readme")
    (work / "examples").symlink_to(ROOT / "examples", target_is_directory=True)
    bin_dir = tmp_path_factory.mktemp("bin")
    for name, body in (
        ("livesr", f'exec "{sys.executable}" -m livesr.stream.cli "$@"\n'),
        ("python", f'exec "{sys.executable}" "$@"\n'),
    ):
        script = bin_dir / name
        script.write_text("#!/bin/sh\n" + body)
        script.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("DISPLAY", None)  # nothing here may need a display
    return work, env


def _output_of(argv: list[str]) -> str | None:
    for flag in ("--output", "-o"):
        if flag in argv and argv.index(flag) + 1 < len(argv):
            return argv[argv.index(flag) + 1]
    return None


@pytest.mark.parametrize("cmd", COMMANDS, ids=[c.id for c in COMMANDS])
def test_readme_command_runs(
    cmd: Command, workspace: tuple[Path, dict[str, str]]
) -> None:
    if cmd.skip is not None:
        pytest.skip(f"README line {cmd.line}: {cmd.skip}")
    work, env = workspace
    before = set(work.glob("livesr-out-*"))
    try:
        proc = subprocess.run(
            ["bash", "-c", cmd.text],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"README line {cmd.line} ran over {TIMEOUT_S} s: {cmd.text}")
    assert proc.returncode == 0, (
        f"README line {cmd.line} exited {proc.returncode}: {cmd.text}\n"
        + (proc.stdout + proc.stderr)[-3000:]
    )
    argv = shlex.split(cmd.text)
    sub = argv[1] if len(argv) > 1 else ""
    out = _output_of(argv)
    if out is None and sub == "run":
        new = set(work.glob("livesr-out-*")) - before
        assert len(new) == 1, f"line {cmd.line}: new default folders {sorted(new)}"
        folder: Path | None = new.pop()
    else:
        folder = work / out if out is not None else None
    if folder is not None:
        assert folder.is_dir() and any(folder.iterdir()), f"{folder} is empty"
    if sub in ("run", "replay") and folder is not None:
        assert (folder / "summary.json").is_file()
        if sub == "run":
            assert (folder / "preview.png").is_file()
    if out == "livesr-demo":  # the quick start: what its paragraph says is there
        text = README.read_text(encoding="utf-8")
        for name in QUICKSTART_FILES:
            assert f"`{name}`" in text and (work / out / name).exists(), name
