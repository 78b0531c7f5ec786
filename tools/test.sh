#!/usr/bin/env bash
# wsreactor's one test command: everything CI checks, from the repository root, on a fresh machine.
#
#   tools/test.sh
#
# Needs Rust stable (cargo, rustfmt, clippy; cargo-nextest if present), Python 3.11+ with venv and
# pip, Node 20+ with npm, Chromium (Debian's `chromium`; installed here when missing and running
# as root), and network access to crates.io, PyPI, the npm registry and Debian's archive.
#
# Steps, in order (the first failure stops the run):
#   1. Python venv at target/interop-venv with tests/interop/requirements.txt (websockets, pinned)
#   2. npm ci --prefix tests/interop (ws, pinned by package-lock.json)
#   3. Chromium for tests/deflate_interop.rs: `chromium` on PATH, else apt-get install chromium
#   4. cargo fmt --all --check
#   5. cargo clippy --workspace --all-targets -- -D warnings, and again with
#      --features bench-internals (which benches/pubsub.rs requires)
#   6. RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps
#   7. cargo nextest run --workspace (cargo test --workspace if nextest is missing)
#   8. cargo test --workspace --doc (nextest does not run doctests)
#
# Environment exported to the tests (tests/support/clients.rs reads them):
#   WSREACTOR_PYTHON        the venv's python, which has the pinned `websockets` installed
#   WSREACTOR_NODE_MODULES  tests/interop/node_modules, which has the pinned `ws` installed
#   WSREACTOR_CHROMIUM      the Chromium binary (kept when already set; then nothing is installed)
# Set them yourself to run `cargo test --test interop` or `--test deflate_interop` without this
# script.
#
# Other knobs:
#   PYTHON=python3.12   the interpreter that creates the venv (default: python3)
#   NEXTEST_PROFILE     passed through to cargo nextest
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$(pwd)

step() {
    printf '\n==> %s\n' "$*"
}

run() {
    printf '+ %s\n' "$*"
    "$@"
}

started=$SECONDS

venv="$root/target/interop-venv"
step "Python interop client: venv at target/interop-venv"
if [[ -e "$venv" ]] && ! "$venv/bin/python" -c '' 2>/dev/null; then
    echo "target/interop-venv is broken (its Python moved?); recreating it"
    rm -rf "$venv"
fi
if [[ ! -x "$venv/bin/python" ]]; then
    if ! run "${PYTHON:-python3}" -m venv "$venv"; then
        rm -rf "$venv"
        # Debian's own python3 keeps venv/ensurepip in a separate package.
        if [[ "${CI:-}" == "true" && $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
            echo "python3 -m venv failed; installing Debian's python3-venv (CI only)"
            run apt-get update -qq
            run env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv
            run "${PYTHON:-python3}" -m venv "$venv"
        else
            echo "error: cannot create a venv; on Debian/Ubuntu: apt-get install python3-venv" >&2
            exit 1
        fi
    fi
fi
run "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
    -r tests/interop/requirements.txt
run "$venv/bin/python" -c 'import websockets; print("websockets", websockets.__version__)'

step "Node interop client: npm ci --prefix tests/interop"
run npm ci --prefix tests/interop --no-audit --no-fund
run node -e 'console.log("ws", require(process.argv[1] + "/ws/package.json").version)' \
    "$root/tests/interop/node_modules"

step "Browser client: chromium"
if [[ -z "${WSREACTOR_CHROMIUM:-}" ]]; then
    if ! command -v chromium >/dev/null; then
        if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
            echo "chromium not found; installing Debian's chromium package"
            run apt-get update -qq
            run env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium
        else
            echo "error: chromium not found; tests/deflate_interop.rs needs it: as root," \
                "apt-get install chromium (Debian), or set WSREACTOR_CHROMIUM to a Chromium" \
                "binary" >&2
            exit 1
        fi
    fi
    WSREACTOR_CHROMIUM=$(command -v chromium)
fi
# Debian's /usr/bin/chromium wrapper prints a harmless shell warning on stderr here.
run "$WSREACTOR_CHROMIUM" --version 2>/dev/null

export WSREACTOR_PYTHON="$venv/bin/python"
export WSREACTOR_NODE_MODULES="$root/tests/interop/node_modules"
export WSREACTOR_CHROMIUM
printf 'WSREACTOR_PYTHON=%s\nWSREACTOR_NODE_MODULES=%s\nWSREACTOR_CHROMIUM=%s\n' \
    "$WSREACTOR_PYTHON" "$WSREACTOR_NODE_MODULES" "$WSREACTOR_CHROMIUM"

step "Formatting"
run cargo fmt --all --check

step "Lints"
run cargo clippy --workspace --all-targets -- -D warnings
run cargo clippy --workspace --all-targets --features bench-internals -- -D warnings

step "Docs"
run env RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps

step "Tests"
if cargo nextest --version >/dev/null 2>&1; then
    run cargo nextest run --workspace --no-fail-fast
else
    echo "cargo-nextest not found; falling back to cargo test"
    run cargo test --workspace --no-fail-fast
fi

step "Doctests"
run cargo test --workspace --doc

step "All checks passed in $((SECONDS - started))s"
