#!/usr/bin/env bash
# Installs the pinned AWS clients (boto3, aws-cli) into target/client-venv, once: a stamp file
# records the requirements it was made from, so running it again is instant. Prints the venv's path.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
venv="$root/target/client-venv"
req="$root/tests/clients/requirements.txt"
stamp="$venv/.requirements"
if [[ -x "$venv/bin/python" && -f "$stamp" ]] && cmp -s "$req" "$stamp"; then
    echo "$venv"
    exit 0
fi
rm -rf "$venv"
python3 -m venv "$venv" >&2
# A clean environment, as for every pip run here.
env -i PATH=/usr/bin:/bin HOME="${HOME:-/root}" "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$req" >&2
cp "$req" "$stamp"
echo "$venv"
