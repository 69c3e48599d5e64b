#!/usr/bin/env bash
# Install the servers, Perl modules and browser the test suite talks to, and the C
# compiler that builds pyramid_kvs.storable's accelerator (tested in CI), when missing.
# Debian/Ubuntu packages; needs root (CI runs as root). Prints what to do otherwise.
set -euo pipefail

need=()
command -v cc >/dev/null 2>&1 || need+=(gcc)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v redis-cli >/dev/null 2>&1 || need+=(redis-tools)  # creates the test cluster
command -v memcached >/dev/null 2>&1 || need+=(memcached)
command -v perl >/dev/null 2>&1 || need+=(perl)
perl -MStorable -MJSON::PP -e1 >/dev/null 2>&1 || need+=(perl)
perl -MCache::Memcached -e1 >/dev/null 2>&1 || need+=(libcache-memcached-perl)
perl -MCGI::Session -e1 >/dev/null 2>&1 || need+=(libcgi-session-perl)
perl -MRedis -e1 >/dev/null 2>&1 || need+=(libredis-perl)
perl -MCache::Memcached::Fast -e1 >/dev/null 2>&1 || need+=(libcache-memcached-fast-perl)
perl -MPlack::Session::Store::Cache -MPlack::Session::Store::File -MPlack::Test \
    -MHTTP::Request::Common -e1 >/dev/null 2>&1 || need+=(libplack-middleware-session-perl)
# the browser test drives Debian's Chromium (Playwright cannot download its own here)
[ -x /usr/bin/chromium ] || need+=(chromium)

if [ ${#need[@]} -eq 0 ]; then
    exit 0
fi
# de-duplicate
mapfile -t need < <(printf '%s\n' "${need[@]}" | sort -u)
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "The test suite needs these Debian packages: ${need[*]}" >&2
    echo "Install them (e.g. sudo apt-get install ${need[*]}) and run make test again." >&2
    exit 1
fi
echo "Installing ${need[*]} with apt-get..."
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
