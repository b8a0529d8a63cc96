#!/usr/bin/env bash
# Installs the Debian packages the project needs when they are missing (root only).
#   system-deps.sh        what the server needs to build (cmake, g++ for llama-cpp-python)
#   system-deps.sh local  + PortAudio headers, to build PyAudio for `voicebot local`
#   system-deps.sh test   + Chromium (browser-page test) and PulseAudio (local-bot test)
#   system-deps.sh image  only Buildah and debootstrap (`make image`, `make image-check`)
set -euo pipefail

need=()
have_command() { command -v "$1" >/dev/null; }
have_package() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }

if [[ ${1:-} == image ]]; then
  have_command buildah || need+=(buildah)
  have_command debootstrap || need+=(debootstrap)
else
  have_command cmake || need+=(cmake)
  have_command g++ || need+=(g++)
fi
if [[ ${1:-} == local || ${1:-} == test ]]; then
  have_package portaudio19-dev || need+=(portaudio19-dev)
fi
if [[ ${1:-} == test ]]; then
  have_command chromium || need+=(chromium)
  have_command pulseaudio || need+=(pulseaudio)
  have_command parec || need+=(pulseaudio-utils)
  have_package libasound2-plugins || need+=(libasound2-plugins)
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
