#!/usr/bin/env bash
# Installs the Debian packages the project needs when they are missing (root only).
# `system-deps.sh` : what the server needs to build (cmake, g++ for llama-cpp-python).
# `system-deps.sh test` : also what the tests need (Chromium for the browser-page test).
set -euo pipefail

need=()
command -v cmake >/dev/null || need+=(cmake)
command -v g++ >/dev/null || need+=(g++)
if [[ ${1:-} == test ]]; then
  command -v chromium >/dev/null || need+=(chromium)
fi

if ((${#need[@]} == 0)); then
  exit 0
fi
if [[ $(id -u) -ne 0 ]]; then
  echo "voicebot needs these Debian packages: ${need[*]}; install them (sudo apt-get install ${need[*]}) and retry." >&2
  exit 1
fi
echo "Installing Debian packages: ${need[*]}"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
