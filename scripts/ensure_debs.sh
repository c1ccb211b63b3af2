#!/usr/bin/env bash
# ensure_debs.sh COMMAND=PACKAGE...: installs, from Debian's packages, each package whose command is
# not on PATH (e.g. `bwrap=bubblewrap chromium=chromium redis-server=redis-server`); installs
# nothing when every command is there. Used by make test / make e2e so a fresh machine passes.
set -euo pipefail
missing=()
for pair in "$@"; do
    command -v "${pair%%=*}" > /dev/null 2>&1 || missing+=("${pair#*=}")
done
[ ${#missing[@]} = 0 ] && exit 0
if ! command -v apt-get > /dev/null; then
    echo "ensure_debs: missing ${missing[*]} and no apt-get: install them by hand" >&2
    exit 1
fi
sudo=
[ "$(id -u)" = 0 ] || sudo="sudo -n"
echo "ensure_debs: installing ${missing[*]}"
# Several make targets may run this at once: wait for apt's own lock instead of failing.
apt=(env DEBIAN_FRONTEND=noninteractive $sudo apt-get -qq -o DPkg::Lock::Timeout=600)
"${apt[@]}" update > /dev/null
"${apt[@]}" install -y --no-install-recommends "${missing[@]}" > /dev/null
