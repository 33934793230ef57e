#!/usr/bin/env bash
# Installs the pinned AWS clients (boto3, aws-cli) into target/client-venv, once: a stamp file
# records the requirements it was made from, so running it again is instant. Prints the venv's path.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
venv="$root/target/client-venv"
req="$root/tests/clients/requirements.txt"
stamp="$venv/.requirements"
ready() { [[ -x "$venv/bin/python" && -f "$stamp" ]] && cmp -s "$req" "$stamp"; }
if ready; then
    echo "$venv"
    exit 0
fi
# Tests running at once wait for the one that installs.
mkdir -p "$root/target"
exec 9>"$root/target/client-venv.lock"
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
python3 -m venv "$venv" >&2
# A clean environment, as for every pip run here.
env -i PATH=/usr/bin:/bin HOME="${HOME:-/root}" "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$req" >&2
cp "$req" "$stamp"
echo "$venv"
