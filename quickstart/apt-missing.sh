# Sourced by quickstart/deps.sh and bench/peers.sh.
# missing_debian_packages PKG...: prints those of PKG... that dpkg does not list as installed.
missing_debian_packages() {
    local p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || echo "$p"
    done
}
