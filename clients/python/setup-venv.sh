#!/usr/bin/env bash
# Makes target/python-client-venv: the Python client (editable, with its sigv4 extra) and the
# pinned versions of requirements-dev.txt, once. A stamp records the files it was made from,
# so running it again is instant. Prints the venv's path.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
client="$root/clients/python"
# shellcheck source=quickstart/stamped-venv.sh
. "$root/quickstart/stamped-venv.sh"
made_from() { cat "$client/requirements-dev.txt" "$client/pyproject.toml"; }
install() {
    venv_pip install --quiet -r "$client/requirements-dev.txt"
    venv_pip install --quiet --no-deps -e "$client"
}
stamped_venv "$root" "$root/target/python-client-venv" /usr/bin/python3 made_from install
