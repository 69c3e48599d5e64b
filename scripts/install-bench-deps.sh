#!/usr/bin/env bash
# Install what `make bench` needs beyond the test suite's system packages, when missing:
# wrk, which loads the HTTP run's servers. Debian/Ubuntu; needs root. Prints what to do
# otherwise (the benchmark then skips its HTTP run).
set -euo pipefail

need=()
command -v wrk >/dev/null 2>&1 || need+=(wrk)

if [ ${#need[@]} -eq 0 ]; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "make bench's HTTP run needs these Debian packages: ${need[*]}" >&2
    echo "Install them (e.g. sudo apt-get install ${need[*]}); the run goes on without it." >&2
    exit 0
fi
echo "Installing ${need[*]} with apt-get..."
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
