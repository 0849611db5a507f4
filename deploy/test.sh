#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit tests, store conformance on both backends, and
# the end-to-end tests that drive a real apiserver with the real kubectl, kube-rs and the Python
# client.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo fmt --all --check
cargo clippy --workspace --all-targets --quiet -- -D warnings
# The end-to-end tests start the real binaries, which test builds do not produce on their own.
cargo build --workspace --all-targets --quiet
cargo nextest run --workspace --no-fail-fast
