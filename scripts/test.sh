#!/usr/bin/env bash
# The one test command (README, CI): installs what the tests need, then runs every check.
#   bash scripts/test.sh
# Steps: formatting, clippy with warnings as errors, the whole test suite (unit, property,
# integration per sub-scenario, concurrency, kill -9 durability, the consoles in headless
# Chromium with screenshots in target/screenshots/), then `dtenge demo`.
set -euo pipefail
cd "$(dirname "$0")/.."

need() { command -v "$1" >/dev/null 2>&1; }

# What the tests need, installed when missing: the Rust toolchain with rustfmt and clippy;
# for the consoles' real-browser tests, Debian's Chromium, Node.js and the pinned
# playwright-core package (tests/browser/package-lock.json).
if ! need cargo; then
  echo "cargo is missing: install Rust from https://rustup.rs first" >&2
  exit 1
fi
rustup component add rustfmt clippy >/dev/null 2>&1 || true

apt_install() {
  local sudo=""
  if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
  echo "== installing $* (Debian packages)"
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}
if [ ! -x /usr/bin/chromium ]; then apt_install chromium; fi
if ! need node || ! need npm; then apt_install nodejs npm; fi
# Clock skew of a participant's process in crates/cli/tests/cluster.rs (libfaketime).
if ! need faketime; then apt_install faketime; fi
# A slow disk in the same tests: strace injects a delay into every fsync.
if ! need strace; then apt_install strace; fi
# The HSM of the key tests (crates/keys, crates/cli/tests/operations.rs): SoftHSM2's PKCS#11
# module and softhsm2-util.
if [ ! -f /usr/lib/softhsm/libsofthsm2.so ] || ! need softhsm2-util; then apt_install softhsm2; fi
if [ ! -d tests/browser/node_modules/playwright-core ]; then
  echo "== npm ci (tests/browser: playwright-core)"
  (cd tests/browser && npm ci --no-audit --no-fund --silent)
fi

# The sandbox keeps its key store's passphrase in the user's configuration directory
# (crates/keys): where an environment names none (no HOME, no XDG_CONFIG_HOME), the tests keep
# it under target/.
if [ -z "${HOME:-}" ] && [ -z "${XDG_CONFIG_HOME:-}" ]; then
  export XDG_CONFIG_HOME="$PWD/target/config"
fi

echo "== cargo fmt --check"
cargo fmt --all -- --check

echo "== cargo clippy -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== cargo test"
mkdir -p target
cargo test --workspace --locked 2>&1 | tee target/test-output.txt
passed=$(grep -Eo '[0-9]+ passed' target/test-output.txt | awk '{s+=$1} END {print s+0}')
failed=$(grep -Eo '[0-9]+ failed' target/test-output.txt | awk '{s+=$1} END {print s+0}')

echo "== dtenge demo (release build)"
cargo run --release --locked --quiet -- demo | tee target/demo-output.txt
demo_line=$(tail -n 1 target/demo-output.txt)

# A short soak (issue 20): a minute of custodial transfers and salaries through the REST API of
# a `dtenge up` the bench starts, in 10 s intervals. It fails if a request fails, the platform
# does not reconcile, the last interval's CPU per payment exceeds the first's by more than 25%,
# or resident memory exceeds the formula of docs/ARCHITECTURE.md ("Memory"): ratios within one
# run, so that the machine's drift does not decide them.
echo "== dtenge bench --soak 60s (release build)"
soak_status=0
cargo run --release --locked --quiet -- bench --soak 60s --interval-s 10 --warmup-s 10 --rate 2000 \
  --accounts 20000 2>&1 | tee target/soak-output.txt || soak_status=$?
if [ "$soak_status" = 0 ]; then soak_passed=1; soak_failed=0; else soak_passed=0; soak_failed=1; fi

demo_passed=$(echo "$demo_line" | grep -Eo '^[0-9]+ passed' | awk '{print $1}')
demo_failed=$(echo "$demo_line" | grep -Eo '[0-9]+ failed' | awk '{print $1}')
echo
echo "cargo test: $passed passed, $failed failed; dtenge demo: $demo_line; soak: $soak_passed passed, $soak_failed failed"
echo "$((passed + demo_passed + soak_passed)) passed, $((failed + demo_failed + soak_failed)) failed"
if [ "$soak_failed" != 0 ]; then
  echo "the soak failed: see target/soak-output.txt" >&2
  exit 1
fi
