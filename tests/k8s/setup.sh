#!/usr/bin/env bash
# Installs the pinned schema checker of contrib/k8s (kubernetes-validate) into target/k8s-venv,
# once: a stamp file records the requirements it was made from, so running it again is
# instant. Prints the venv's path.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
req="$root/tests/k8s/requirements.txt"
# shellcheck source=quickstart/stamped-venv.sh
. "$root/quickstart/stamped-venv.sh"
made_from() { cat "$req"; }
install() { venv_pip install --quiet -r "$req"; }
stamped_venv "$root" "$root/target/k8s-venv" python3 made_from install
