#!/usr/bin/env bash
# Installs and prepares what corral's tests and examples need on a fresh
# Debian host. Idempotent; needs root (apt-get, useradd).
set -euo pipefail

PACKAGES=(
  docker-registry skopeo umoci busybox-static uidmap passt slirp4netns
  debootstrap apache2-utils fuse-overlayfs zstd curl jq iproute2 util-linux
  podman crun bubblewrap hyperfine
  # Building ISA-L (the isal-sys crate, our gzip inflater) from source.
  nasm autoconf automake libtool make
  # glibc's static libraries, for the static binary of scripts/build.sh.
  libc6-dev
  # musl-gcc, for the static musl binary of scripts/build.sh (C of isal-sys, zstd, ring).
  musl-tools
)

if [ "$(id -u)" -ne 0 ]; then
  echo "setup-host: run as root (installs packages and creates test users)" >&2
  exit 1
fi

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup-host: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# docker-registry's package starts a service on :5000 where an init system
# exists; our scripts run their own instance on a free port instead.

# Rootless tests run as two unprivileged users: one with a subuid/subgid
# range (newuidmap path) and one without (single-ID mapping path).
if ! id corral-sub >/dev/null 2>&1; then
  useradd -m -s /bin/bash corral-sub
fi
if ! grep -q '^corral-sub:' /etc/subuid; then
  usermod --add-subuids 200000-265535 --add-subgids 200000-265535 corral-sub
fi
if ! id corral-nosub >/dev/null 2>&1; then
  useradd -m -s /bin/bash corral-nosub
fi
sed -i '/^corral-nosub:/d' /etc/subuid /etc/subgid

# Stock distributions ship these 0666; this host's are 0600, which breaks
# rootless pasta/slirp4netns and fuse-overlayfs.
for dev in /dev/net/tun /dev/fuse; do
  [ -e "$dev" ] && chmod 0666 "$dev"
done
exit 0
