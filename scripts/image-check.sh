#!/usr/bin/env bash
# `make image-check`: runs the built image as deploy/k8s/deployment.yaml runs it, and checks it
# serves, answers a spoken question and drains on SIGTERM (scripts/image_check.py says how).
# Builds the image first when it is missing. Needs root, buildah and util-linux's unshare: the
# image is mounted with buildah and run in new network/mount/PID namespaces with loopback only
# (`podman run` cannot set rlimits in some sandboxes; this needs no container runtime).
#   IMAGE=name:tag   the image to check (default voicebot:VERSION)
#   PYTHON=path      the interpreter for the check (default .venv/bin/python: `make setup`)
#   LOG=path         where the server's log is kept (default /tmp/voicebot-image-check.log)
#   MANIFEST=path    the Deployment to run it as (default deploy/k8s/deployment.yaml)
set -euo pipefail
cd "$(dirname "$0")/.."

version=$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
image=${IMAGE:-voicebot:$version}
python=${PYTHON:-.venv/bin/python}

if [[ $(id -u) -ne 0 ]] || ! command -v buildah >/dev/null; then
  echo "image-check.sh: needs root and buildah (apt-get install buildah)" >&2
  exit 1
fi
# Buildah's store (Podman's too); an image that only Docker has is built again here.
buildah inspect --type image "$image" >/dev/null 2>&1 || IMAGE=$image IMAGE_TOOL=buildah bash scripts/image.sh

workdir=$(mktemp -d /tmp/voicebot-image-check.XXXXXX)
container=$(buildah from --pull=false --quiet "$image")
cleanup() {
  buildah umount "$container" >/dev/null 2>&1 || true
  buildah rm "$container" >/dev/null 2>&1 || true
  rm -rf "$workdir"
}
trap cleanup EXIT
rootfs=$(buildah mount "$container")
buildah inspect --type image "$image" >"$workdir/image.json"
echo "image-check: $image, $(buildah images --format '{{.Size}}' "$image" | head -n 1)"

# --kill-child: whatever the check leaves running dies with it. Its mounts are private to its
# namespace and go with it; the mount points it makes (TMPDIR) are removed with $workdir.
TMPDIR=$workdir unshare --net --mount --pid --fork --kill-child \
  "$python" scripts/image_check.py --rootfs "$rootfs" --image "$workdir/image.json" \
  --manifest "${MANIFEST:-deploy/k8s/deployment.yaml}" --log "${LOG:-/tmp/voicebot-image-check.log}"
