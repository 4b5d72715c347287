#!/usr/bin/env bash
# Regenerates the dialect and pass references from the .td files and copies
# them into docs/reference/, where test/docs/reference-in-sync.test checks them.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
build="${1:-build}"
[[ -f "$build/build.ninja" ]] || cmake -S . -B "$build" -G Ninja >/dev/null
cmake --build "$build" --target moec-docs >/dev/null
mkdir -p docs/reference
cp "$build"/docs/{moe-dialect,nn-dialect,passes}.md docs/reference/
echo "docs/reference updated from $build/docs"
