#!/usr/bin/env bash
# Runs every test of the workspace: unit, property, integration (real QUIC on
# loopback, real redis-server processes, real processes killed with SIGKILL)
# and a replay of each fuzz target's committed corpus.
#
# Usage: bash scripts/test.sh [extra arguments for `cargo test`]
#
# It installs what it needs when missing (redis-server, from the Debian
# packages) and the tests start and stop their own servers. As root it also
# runs the ignored tests, which need root and network namespaces, and
# installs what the container tests need (podman and runc from the Debian
# packages, podman-compose from the Python package index).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null; then
    echo "cargo is required: install a Rust toolchain first" >&2
    exit 1
fi

missing=()
if ! command -v redis-server >/dev/null || ! command -v redis-cli >/dev/null; then
    missing+=(redis-server) # the directory and resilience tests
fi
if ! command -v ip >/dev/null; then
    missing+=(iproute2) # the network-namespace testbed tests of deploy/
fi
if ! command -v nft >/dev/null || ! command -v ethtool >/dev/null; then
    missing+=(nftables ethtool) # impaired links in the testbed tests of deploy/
fi
if [ "$(id -u)" -eq 0 ]; then
    # The container tests of deploy/ (podman with runc; podman-compose below).
    if ! command -v podman >/dev/null || ! command -v runc >/dev/null; then
        missing+=(podman runc)
    fi
    if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
        missing+=(python3-venv)
    fi
fi
if [ "${#missing[@]}" -gt 0 ]; then
    echo "installing ${missing[*]}"
    if [ "$(id -u)" -eq 0 ]; then sudo=""; else sudo="sudo"; fi
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi
# The packaged service is not needed: tests start their own servers on free ports.

# Debian's podman-compose (1.0.3) cannot bring up the compose files of
# `gdp-deploy compose`; the Python package index's (1.1 or later) can. It goes
# into a virtual environment under target/, named to the tests by
# GDP_PODMAN_COMPOSE.
if [ "$(id -u)" -eq 0 ] && [ -z "${GDP_PODMAN_COMPOSE:-}" ]; then
    venv=${CARGO_TARGET_DIR:-target}/podman-compose
    if [ ! -x "$venv/bin/podman-compose" ]; then
        echo "installing podman-compose into $venv"
        python3 -m venv "$venv" && "$venv/bin/pip" install -q podman-compose
    fi
    GDP_PODMAN_COMPOSE=$(cd "$venv/bin" && pwd)/podman-compose
    export GDP_PODMAN_COMPOSE
fi

# Build every test binary (and the binaries the integration tests spawn) once,
# then run them all.
cargo build --workspace --locked --bins
cargo test --workspace --locked --no-run
cargo test --workspace --locked "$@"

# Tests that need root (network namespaces) are marked #[ignore], so a run
# without root reports them as ignored rather than passing them. As root,
# run them as well.
if [ "$(id -u)" -eq 0 ]; then
    cargo test --workspace --locked -- --ignored
else
    echo "not root: the tests that need root and network namespaces were not run"
fi
