#!/usr/bin/env bash
# Makes a Debian bookworm base image with Python 3.11 from Debian's own packages (debootstrap),
# for machines that build images but cannot pull python:3.11-slim-bookworm from a registry.
#   image-base.sh TAG      builds TAG with buildah (root; debootstrap and buildah from apt)
# The Debian mirror is the one this machine's apt uses (read from its sources at run time).
set -euo pipefail

tag=${1:?usage: image-base.sh TAG}

debian_mirror() {
  # The archive that serves suite $1: deb822 (.sources) entries first, then one-line ones.
  local file
  for file in /etc/apt/sources.list.d/*.sources; do
    [[ -f $file ]] || continue
    awk -v suite="$1" 'BEGIN { RS = ""; FS = "\n" }
         { for (i = 1; i <= NF; i++) if ($i ~ /^Suites:/) { n = split($i, s, " ")
             for (j = 2; j <= n; j++) if (s[j] == suite) found = 1 } }
         found { for (i = 1; i <= NF; i++) if ($i ~ /^URIs:/) { split($i, u, " "); print u[2]; exit } }
         { found = 0 }' "$file"
  done
  cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
    | awk -v suite="$1" '$1 == "deb" && $3 == suite { print $2 }'
}

mirror=${DEBIAN_MIRROR:-}
[[ -n $mirror ]] || mirror=$(debian_mirror bookworm | head -n 1 || true)
security=${DEBIAN_SECURITY_MIRROR:-}
[[ -n $security ]] || security=$(debian_mirror bookworm-security | head -n 1 || true)
if [[ -z $mirror ]]; then
  echo "image-base.sh: no bookworm mirror in this machine's apt sources; set DEBIAN_MIRROR" >&2
  exit 1
fi

rootfs=$(mktemp -d /var/tmp/voicebot-base.XXXXXX)
container=""
cleanup() {
  [[ -n $container ]] && buildah rm "$container" >/dev/null 2>&1 || true
  rm -rf "$rootfs"
}
trap cleanup EXIT

echo "image-base.sh: debootstrap bookworm from $mirror"
debootstrap --variant=minbase --include=python3,python3-venv,python-is-python3,ca-certificates \
  bookworm "$rootfs" "$mirror" >"$rootfs.log" 2>&1 || { tail -n 20 "$rootfs.log" >&2; exit 1; }
rm -f "$rootfs.log"
# Updates and security fixes too, as Debian's own images have them (debootstrap sets only bookworm).
{
  echo "deb $mirror bookworm main"
  echo "deb $mirror bookworm-updates main"
  if [[ -n $security ]]; then echo "deb $security bookworm-security main"; fi
} >"$rootfs/etc/apt/sources.list"
# What an image keeps from a bootstrap: no package caches or lists (apt-get update fetches them).
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/log/*.log

container=$(buildah from scratch)
tar -C "$rootfs" -c . | tar -C "$(buildah mount "$container")" -x
buildah unmount "$container" >/dev/null
buildah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  --env LANG=C.UTF-8 --cmd python3 "$container"
buildah commit --quiet --rm "$container" "$tag" >/dev/null
container=""
echo "image-base.sh: built $tag"
