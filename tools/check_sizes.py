"""Module and function size limits of the package (issue 17).

    python tools/check_sizes.py        # exit 1 and a list when a limit is broken

- no module of the package (``stream/ engine/ kernels/ adapters/ sim/``) over
  ``MAX_MODULE`` lines;
- no function or method over ``MAX_FUNCTION`` lines unless the first statement of
  its body is a docstring or the line right after its signature is a comment that
  contains ``Long because`` (the reason, in a sentence).
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOTS = ("stream", "engine", "kernels", "adapters", "sim")
MAX_MODULE = 600
MAX_FUNCTION = 80
MARK = "Long because"


def _reason_given(fn: ast.FunctionDef | ast.AsyncFunctionDef, lines: list[str]) -> bool:
    first = fn.body[0]
    start = first.lineno - 1
    if (
        isinstance(first, ast.Expr)
        and isinstance(first.value, ast.Constant)
        and isinstance(first.value.value, str)
        and MARK in first.value.value
    ):
        return True
    # a comment between the signature and the first statement
    head = lines[fn.lineno - 1 : start + 1]
    return any(MARK in line for line in head)


def check(repo: Path) -> list[str]:
    problems: list[str] = []
    for root in ROOTS:
        for path in sorted((repo / root).rglob("*.py")):
            text = path.read_text(encoding="utf-8")
            lines = text.splitlines()
            rel = path.relative_to(repo)
            if len(lines) > MAX_MODULE:
                problems.append(f"{rel}: {len(lines)} lines (limit {MAX_MODULE})")
            for node in ast.walk(ast.parse(text)):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    n = (node.end_lineno or node.lineno) - node.lineno + 1
                    if n > MAX_FUNCTION and not _reason_given(node, lines):
                        problems.append(
                            f"{rel}:{node.lineno}: {node.name}() is {n} lines (limit "
                            f"{MAX_FUNCTION}; or write '# {MARK} ...' at its top)"
                        )
    return problems


def main() -> int:
    problems = check(Path(__file__).resolve().parents[1])
    for p in problems:
        print(p)
    print(f"{len(problems)} size problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
