#!/usr/bin/env bash
# Installs every Debian 12 package the build, the tests, the demo and the benchmark need.
# Idempotent: packages already present are not fetched again.
set -euo pipefail
packages=(
  build-essential cmake ninja-build pkg-config clang-format clang libclang-rt-14-dev
  libboost1.81-dev libyaml-cpp-dev libspdlog-dev libfmt-dev nlohmann-json3-dev
  libssl-dev libcli11-dev libgtest-dev libgmock-dev libbenchmark-dev libhiredis-dev libsqlite3-dev
  python3 python3-flask python3-pytest python3-requests curl wrk redis-server redis-tools haproxy
  python3-uvicorn python3-starlette python3-websockets gunicorn iproute2
  chromium
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "bootstrap: need root to install: ${missing[*]}" >&2; exit 1; }
  sudo=sudo
fi
echo "bootstrap: installing ${missing[*]}" >&2
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
