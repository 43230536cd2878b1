#!/usr/bin/env bash
# The GPU machines cannot reach a package registry. Run this HERE (a machine with Debian's apt)
# before a device run: it downloads the build dependencies as .deb files into .device-debs/
# (ignored by git), which the device run carries and unpacks (bench/device_check.sh does).
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.device-debs/' .git/info/exclude 2>/dev/null || echo '/.device-debs/' >>.git/info/exclude
mkdir -p .device-debs
cd .device-debs
apt-get download libcli11-dev nlohmann-json3-dev libgtest-dev libgmock-dev googletest \
  libbenchmark-dev libbenchmark1debian libsqlite3-dev libsqlite3-0 libssl-dev libssl3
ls -la
