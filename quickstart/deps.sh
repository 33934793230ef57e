#!/usr/bin/env bash
# Installs what lambdaworker needs (only what is missing) and builds ./bin/admin and ./bin/worker.
# Idempotent: a second run installs nothing and rebuilds only if sources changed.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

if [ "$(id -u)" != 0 ]; then
    echo "deps.sh: lambdaworker needs root (namespaces, mounts, cgroups); run it as root (sudo -s)" >&2
    exit 1
fi

# Debian packages: debootstrap builds the base root filesystem; curl is used by the demo;
# haproxy is the balancer `admin lb` runs.
# shellcheck source=quickstart/apt-missing.sh
. ./quickstart/apt-missing.sh
packages=(debootstrap curl ca-certificates haproxy)
mapfile -t missing < <(missing_debian_packages "${packages[@]}")
if [ ${#missing[@]} -gt 0 ]; then
    say "installing ${missing[*]}"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
else
    say "system packages present (${packages[*]})"
fi

if ! command -v cargo >/dev/null 2>&1; then
    echo "deps.sh: cargo not found; install a Rust toolchain (rustup) first" >&2
    exit 1
fi

say "building lambdaworker (cargo build --release)"
cargo build --release --locked -p admin -p worker 2>&1 | grep -v '^\s*Compiling\|^\s*Checking' >&2 || {
    echo "deps.sh: cargo build failed" >&2
    exit 1
}
mkdir -p bin
for b in admin worker; do
    install -m 0755 "target/release/$b" "bin/$b.tmp"
    mv -f "bin/$b.tmp" "bin/$b"
done
say "installed ./bin/admin and ./bin/worker"
# Man pages and shell completions, from the same definitions admin parses.
share=target/share
./bin/admin man --dir "$share/man/man1" >/dev/null
mkdir -p "$share/completions"
./bin/admin completions bash >"$share/completions/admin.bash"
./bin/admin completions zsh >"$share/completions/_admin"
./bin/admin completions fish >"$share/completions/admin.fish"
say "man pages in $share/man (man -M $share/man admin-doctor), completions in $share/completions"
