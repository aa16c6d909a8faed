#!/usr/bin/env bash
# Checks that proto/src/gen/ matches proto/proto/*.proto; with --bless, rewrites it.
# Uses protox (pure Rust): no protoc needed.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--bless" ]; then export STRATA_PROTO_BLESS=1; fi
exec cargo test -p strata-proto --features codegen --test codegen --locked
