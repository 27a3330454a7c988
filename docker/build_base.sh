#!/usr/bin/env bash
# Builds the registry-free base image of the CI path: a Debian bookworm minbase root file system
# made by debootstrap with the runtime libraries the binaries need, imported with `docker import`.
#
# Usage: docker/build_base.sh IMAGE PACKAGES_FILE
#   IMAGE          tag to give the image (e.g. kvcompact-base:bookworm)
#   PACKAGES_FILE  one Debian package per line (docker/runtime_packages.sh writes it)
# Environment:
#   KVC_ROOTFS_CACHE  where root file system tarballs and downloaded .debs are kept between runs
#                     (default /var/cache/kvcompact); a tarball is keyed by the hash of the
#                     package list, the suite and this script's recipe version, so a changed
#                     list builds a new one and an unchanged one is reused.
#   KVC_DEBIAN_MIRROR default http://deb.debian.org/debian
#   DOCKER_HOST       the daemon to import into (tests/compose/run.sh sets it)
# Skips debootstrap when the tarball is cached, and the import when the daemon already has an
# image with the same key (label kvcompact.rootfs-key).
set -euo pipefail

if [ $# -ne 2 ]; then
  echo "usage: $0 IMAGE PACKAGES_FILE" >&2
  exit 2
fi
image=$1
packages_file=$2
suite=bookworm
recipe=1  # bump when the way the root file system is made changes
mirror=${KVC_DEBIAN_MIRROR:-http://deb.debian.org/debian}
cache=${KVC_ROOTFS_CACHE:-/var/cache/kvcompact}

log() { echo "build_base: $*"; }
die() { echo "build_base: error: $*" >&2; exit 1; }

[ -s "$packages_file" ] || die "package list $packages_file is missing or empty"
command -v debootstrap >/dev/null ||
  die "debootstrap is not installed (run scripts/setup_docker.sh)"
[ "$(id -u)" -eq 0 ] || die "debootstrap needs root"

# The package list, normalised: sorted, unique, no blanks; bash and coreutils are in minbase
# already (the health probe uses bash's /dev/tcp and coreutils' timeout).
mapfile -t packages < <(grep -v '^\s*$' "$packages_file" | sort -u)
key=$(printf '%s\n' "suite=$suite" "recipe=$recipe" "${packages[@]}" | sha256sum | cut -c1-16)
tarball="$cache/rootfs-$suite-$key.tar"

existing=$(docker images -q --filter "label=kvcompact.rootfs-key=$key" | head -n1)
if [ -n "$existing" ]; then
  docker tag "$existing" "$image"
  log "image with root file system $key already present; tagged $image"
  exit 0
fi

mkdir -p "$cache/debs"
if [ -f "$tarball" ]; then
  log "reusing cached root file system $tarball"
else
  log "debootstrap $suite (minbase) with ${#packages[@]} runtime packages; this takes minutes"
  work=$(mktemp -d "$cache/rootfs-build.XXXXXX")
  # Removes the partial tree on any failure (after releasing what debootstrap may have mounted
  # in it, e.g. proc and sys when interrupted); the finished tarball is moved into place last.
  drop_work() {
    local m
    while read -r m; do
      umount -l "$m" 2>/dev/null || true
    done < <(awk -v d="$work/" 'index($5, d) == 1 { print $5 }' /proc/self/mountinfo | sort -r)
    rm -rf "$work"
  }
  trap drop_work EXIT
  include=$(IFS=,; echo "${packages[*]}")
  if ! debootstrap --variant=minbase --include="$include" --cache-dir="$cache/debs" \
      "$suite" "$work/root" "$mirror" >"$work/debootstrap.log" 2>&1; then
    tail -n 30 "$work/debootstrap.log" >&2
    die "debootstrap failed (log above; mirror $mirror)"
  fi
  # Slim the tree: package lists, caches and docs are not needed at run time.
  rm -rf "$work/root/var/lib/apt/lists/"* "$work/root/var/cache/apt/"*.bin \
    "$work/root/var/cache/apt/archives/"*.deb "$work/root/usr/share/doc/"* \
    "$work/root/usr/share/man/"* "$work/root/usr/share/info/"*
  # Every runtime package must really be installed, not just unpacked.
  for p in "${packages[@]}"; do
    # shellcheck disable=SC2016  # ${Status} is dpkg-query's field, not the shell's
    chroot "$work/root" dpkg-query -W -f='${Status}' "$p" 2>/dev/null |
      grep -q "install ok installed" || die "package $p did not install into the root file system"
  done
  tar --numeric-owner -C "$work/root" -cf "$work/rootfs.tar" .
  mv "$work/rootfs.tar" "$tarball"
  drop_work
  trap - EXIT
  # Older tarballs of other package lists are dropped so the cache holds one per suite.
  find "$cache" -maxdepth 1 -name "rootfs-$suite-*.tar" ! -name "$(basename "$tarball")" -delete
  log "root file system cached at $tarball ($(du -h "$tarball" | cut -f1))"
fi

log "importing $tarball as $image"
docker import --change "LABEL kvcompact.rootfs-key=$key" --change 'CMD ["/bin/bash"]' \
  "$tarball" "$image" >/dev/null
log "image $image ready (root file system $key)"
