#!/bin/sh
# Install the named Debian packages that are missing, when running as root with apt-get.
# Otherwise print which are missing and go on: the features that need them skip and say so.
missing=""
for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing system packages:$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null 2>&1 || true
    apt-get install -y -qq --no-install-recommends $missing >/dev/null 2>&1 \
        || apt-get install -y -qq $missing >/dev/null 2>&1 \
        || echo "warning: could not install:$missing (tests that need them will skip)"
else
    echo "note: system packages not installed (need root and apt):$missing"
fi
exit 0
