# Sourced by tests/clients/setup.sh, tests/k8s/setup.sh and clients/python/setup-venv.sh.
# stamped_venv ROOT VENV PYTHON MADE_FROM INSTALL: makes the virtual environment VENV with PYTHON
# once, and prints its path. MADE_FROM is a function printing what the venv is made from; its
# output is kept as a stamp in VENV, so that while it is unchanged a second run is instant.
# INSTALL is a function that fills the new venv, calling `venv_pip ARGS...` (the venv's pip,
# in a clean environment, as every pip run here). Runs at once wait for the one that installs.
# shellcheck source=quickstart/apt-missing.sh
. "$(dirname "${BASH_SOURCE[0]}")/apt-missing.sh"

stamped_venv() {
    local root=$1 venv=$2 python=$3 made_from=$4 install=$5
    local stamp="$venv/.made-from"
    _venv_ready() { [[ -x "$venv/bin/python" && -f "$stamp" ]] && cmp -s <("$made_from") "$stamp"; }
    if _venv_ready; then
        echo "$venv"
        return 0
    fi
    mkdir -p "$root/target"
    exec 9>"$venv.lock"
    flock 9
    if ! _venv_ready; then
        # Debian's python3 makes virtual environments only with python3-venv.
        local missing
        mapfile -t missing < <(missing_debian_packages python3-venv)
        if [ ${#missing[@]} -gt 0 ]; then
            apt-get update -q >&2
            DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >&2
        fi
        rm -rf "$venv"
        "$python" -m venv "$venv" >&2
        venv_pip() { env -i PATH=/usr/bin:/bin HOME="${HOME:-/root}" "$venv/bin/pip" --disable-pip-version-check "$@"; }
        "$install" >&2
        "$made_from" >"$stamp"
    fi
    exec 9>&-
    echo "$venv"
}
