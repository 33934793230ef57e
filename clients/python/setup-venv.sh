#!/usr/bin/env bash
# Makes target/python-client-venv: the Python client (editable, with its sigv4 extra) and the
# pinned versions of requirements-dev.txt, once. A stamp records the files it was made from,
# so running it again is instant. Prints the venv's path.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
client="$root/clients/python"
venv="$root/target/python-client-venv"
stamp="$venv/.made-from"
made_from() { cat "$client/requirements-dev.txt" "$client/pyproject.toml"; }
ready() { [[ -x "$venv/bin/python" && -f "$stamp" ]] && cmp -s <(made_from) "$stamp"; }
if ready; then
    echo "$venv"
    exit 0
fi
# Tests running at once wait for the one that installs.
mkdir -p "$root/target"
exec 9>"$root/target/python-client-venv.lock"
flock 9
if ready; then
    echo "$venv"
    exit 0
fi
# Debian's python3 makes virtual environments only with python3-venv.
# shellcheck source=quickstart/apt-missing.sh
. "$root/quickstart/apt-missing.sh"
mapfile -t missing < <(missing_debian_packages python3-venv)
if [ ${#missing[@]} -gt 0 ]; then
    apt-get update -q >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >&2
fi
rm -rf "$venv"
/usr/bin/python3 -m venv "$venv" >&2
# A clean environment, as for every pip run here.
pip() { env -i PATH=/usr/bin:/bin HOME="${HOME:-/root}" "$venv/bin/pip" --disable-pip-version-check "$@"; }
pip install --quiet -r "$client/requirements-dev.txt" >&2
pip install --quiet --no-deps -e "$client" >&2
made_from >"$stamp"
echo "$venv"
