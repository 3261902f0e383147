#!/usr/bin/env bash
# Make the base image the Dockerfile's runtime stage uses (`debian:bookworm-slim`) on a
# machine whose Docker engine cannot pull images (no registry): debootstrap a minimal
# Debian bookworm from the Debian mirror apt already uses, import it, and tag it with that
# name. Skipped when an image of that name exists. Needs root (debootstrap).
#
#   scripts/docker-base-image.sh            # debian:bookworm-slim
#   DEBIAN_MIRROR=http://deb.debian.org/debian scripts/docker-base-image.sh
#
# The image is a plain minbase bookworm (no docs stripped): what matters to Starcite is
# the same glibc and the same /etc/passwd tooling (useradd) as the official slim image.
set -euo pipefail
tag=${BASE_IMAGE_TAG:-debian:bookworm-slim}
if docker image inspect "$tag" >/dev/null 2>&1; then
  echo "base image $tag: present"
  exit 0
fi
mirror=${DEBIAN_MIRROR:-$(sed -n 's/^URIs: *\(http[^ ]*\/debian\)$/\1/p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -n1)}
mirror=${mirror:-http://deb.debian.org/debian}
command -v debootstrap >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null; }
root=$(mktemp -d "${TMPDIR:-/tmp}/starcite-rootfs.XXXXXX")
trap 'rm -rf "$root"' EXIT
echo "base image $tag: debootstrap bookworm from $mirror (a few minutes)"
debootstrap --variant=minbase bookworm "$root" "$mirror" >"$root.log" 2>&1 || { tail -n 30 "$root.log"; exit 1; }
rm -f "$root.log"
# Smaller and reproducible-ish: no apt lists or caches in the image.
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb
tar --numeric-owner -C "$root" -c . | docker import --change 'CMD ["bash"]' - "$tag" >/dev/null
echo "base image $tag: imported ($(docker image inspect -f '{{.Size}}' "$tag") bytes)"
