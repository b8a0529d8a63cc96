#!/usr/bin/env bash
# `make image`: builds voicebot:VERSION (VERSION from pyproject.toml) from the working tree with
# whatever the machine has: Docker, else Podman, else Buildah (no daemon, chroot isolation).
# The base is python:3.11-slim-bookworm when it can be pulled; where it cannot (no registry), a
# Debian bookworm base made here from Debian's packages (scripts/image-base.sh) is used instead.
#   IMAGE=name:tag   the tag to build (default voicebot:VERSION)
#   IMAGE_BASE=ref   force a base image (skips the pull and the local base)
#   IMAGE_TOOL=name  docker, podman or buildah instead of the first one found
set -euo pipefail
cd "$(dirname "$0")/.."

version=$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
image=${IMAGE:-voicebot:$version}
standard_base=python:3.11-slim-bookworm
local_base=localhost/voicebot-base:bookworm

if [[ -n ${IMAGE_TOOL:-} ]]; then
  tool=$IMAGE_TOOL
elif docker info >/dev/null 2>&1; then
  tool=docker
elif command -v podman >/dev/null; then
  tool=podman
elif command -v buildah >/dev/null; then
  tool=buildah
else
  echo "image.sh: needs Docker, Podman or Buildah (Debian: apt-get install buildah)" >&2
  exit 1
fi

has_image() {
  case $tool in
    docker) docker image inspect "$1" >/dev/null 2>&1 ;;
    *) $tool inspect --type image "$1" >/dev/null 2>&1 ;;
  esac
}

base=${IMAGE_BASE:-}
if [[ -z $base ]]; then
  if has_image "$standard_base" || $tool pull --quiet "$standard_base" >/dev/null 2>&1; then
    base=$standard_base
  else
    if ! has_image "$local_base"; then
      echo "image.sh: cannot pull $standard_base; making a Debian bookworm base with debootstrap"
      if [[ $tool == docker ]]; then
        echo "image.sh: the local base needs buildah (apt-get install buildah debootstrap)" >&2
        exit 1
      fi
      bash scripts/image-base.sh "$local_base"
    fi
    base=$local_base
  fi
fi

# pip in the build trusts what this machine trusts (a TLS-inspecting proxy's CA, say): the bundle
# goes in as a build secret, mounted for the install step only, never into a layer.
ca_bundle=${PIP_CERT:-${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}}
secret=()
[[ -s $ca_bundle ]] && secret=(--secret "id=ca,src=$ca_bundle")

echo "image.sh: building $image on $base with $tool"
started=$(date +%s)
case $tool in
  docker) DOCKER_BUILDKIT=1 docker build "${secret[@]}" --build-arg "BASE=$base" -t "$image" . ;;
  # --layers: a rebuild after a code change reuses the compiled dependencies' layer.
  *) $tool build --isolation chroot --layers --pull=never "${secret[@]}" --build-arg "BASE=$base" \
       -t "$image" . ;;
esac
seconds=$(($(date +%s) - started))
case $tool in
  docker) size="$(($(docker image inspect --format '{{.Size}}' "$image") / 1000000)) MB" ;;
  *) size=$($tool images --format '{{.Size}}' "$image" | head -n 1) ;;
esac
echo "image.sh: built $image in ${seconds}s; size $size"
