#!/usr/bin/env bash
# The test suite, from a fresh clone on a fresh Debian 12 machine: installs the
# dependencies, configures, builds everything and runs every test (lit suite,
# docs sync check, unit tests) through ctest.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/setup.sh
cmake -S . -B build -G Ninja
cmake --build build
ctest --test-dir build --output-on-failure
