#!/usr/bin/env bash
# The fast checks, without root and without a Docker engine: formatting,
# clippy, the unit tests and the layout test, the docs with warnings
# denied, and the fuzz targets built and run over their corpus. A few
# minutes once target/ is built. ./scripts/test.sh runs this first, then the
# integration tests.
#
# The fuzz targets (fuzz/, a cargo-fuzz crate) are built here on stable as
# plain libFuzzer binaries, without coverage instrumentation: that proves
# they compile against the library and replays the corpus. To fuzz for real:
#   cargo install cargo-fuzz && cargo +nightly fuzz run classify
set -euo pipefail
cd "$(dirname "$0")/.."

export RUST_LIB_BACKTRACE=0
echo "==> cargo fmt --check"
cargo fmt --all -- --check
(cd fuzz && cargo fmt --all -- --check)

echo "==> cargo clippy"
cargo clippy --all-targets --locked -- -D warnings

echo "==> unit tests, the layout test, tests against the fake engine (no root needed)"
cargo test --locked --lib --bins --test layout --test fake -- --test-threads=2

echo "==> cargo doc (warnings denied)"
RUSTDOCFLAGS="-D warnings" cargo doc --locked --no-deps --document-private-items --quiet

echo "==> fuzz targets: build, replay the corpus, a short uninstrumented run"
# Shares target/ with the main build, so the library is built once. A
# failing input is written to target/fuzz-artifacts/.
CARGO_TARGET_DIR="$PWD/target" cargo build --locked --quiet --manifest-path fuzz/Cargo.toml --bins
mkdir -p target/fuzz-artifacts
for t in fuzz/fuzz_targets/*.rs; do
  name=$(basename "$t" .rs)
  run() { target/debug/"$name" -artifact_prefix=target/fuzz-artifacts/ "$@" 2>/dev/null; }
  if [ -d "fuzz/corpus/$name" ]; then
    run -runs=0 "fuzz/corpus/$name"
    echo "    $name: its corpus passes"
  fi
  run -runs=20000 -seed=1
  echo "    $name: 20000 random inputs pass"
done
