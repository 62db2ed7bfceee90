#!/usr/bin/env bash
# Static checks of issue 17, from the repository root (run by .ci/run after the tests):
#   ruff check, import-linter contracts, mypy, module/function size limits.
# The package is installed with setuptools' package-dir mapping (stream/ -> livesr.stream);
# mypy and import-linter read it through a tree of links named as the import names.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-python}
LINKS=$(mktemp -d)
trap 'rm -rf "$LINKS"' EXIT
mkdir -p "$LINKS/livesr"
for d in stream engine kernels adapters sim; do ln -s "$ROOT/$d" "$LINKS/livesr/$d"; done
cd "$ROOT"
echo "== ruff check"; $PY -m ruff check .
echo "== import-linter"; (cd "$LINKS" && PYTHONPATH="$LINKS" lint-imports --config "$ROOT/pyproject.toml")
echo "== mypy"; (cd "$LINKS" && $PY -m mypy --config-file "$ROOT/pyproject.toml" -p livesr.engine -p livesr.kernels -p livesr.stream -p livesr.adapters -p livesr.sim)
echo "== sizes"; $PY tools/check_sizes.py
