#!/usr/bin/env bash
# Builds the corral binary to install and ship: a release build, statically
# linked on glibc Linux hosts. Prints the binary's path on stdout.
#
#   bash scripts/build.sh            # target/<host-triple>/release/corral
#   CORRAL_BUILD_DYNAMIC=1 bash scripts/build.sh   # plain `cargo build --release`
#
# Why static: every `corral exec` and every step starts our binary, and on a
# dynamically linked one the loader maps libc, libm and libgcc_s and binds
# their symbols first: about 0.9 ms of each start on the 2-vCPU VMs we
# measure on (`corral --version`: 2.1 ms dynamic, 1.2 ms static), a sixth of
# a whole sandbox. A static binary also runs on hosts with an older glibc.
#
# The one difference in behaviour: host names resolve through /etc/hosts and
# DNS only (glibc's built-in NSS "files" and "dns"); modules such as mdns or
# myhostname in /etc/nsswitch.conf are not loaded. `cargo build --release`
# (dynamic) remains available where that matters.
#
# crt-static needs an explicit --target: without one, RUSTFLAGS would also
# reach proc-macro crates, which cannot be built statically.
set -euo pipefail
cd "$(dirname "$0")/.."

host=$(rustc -vV | sed -n 's/^host: //p')
static=no
case $host in *-linux-gnu*) static=yes ;; esac
[ -z "${CORRAL_BUILD_DYNAMIC:-}" ] || static=no

if [ "$static" = yes ]; then
  # relocation-model=static: a position-dependent executable, as build.rs
  # links the dynamic one (see there).
  var=CARGO_TARGET_$(echo "$host" | tr 'a-z-' 'A-Z_')_RUSTFLAGS
  export "$var"="-C target-feature=+crt-static -C relocation-model=static"
  cargo build --quiet --release --target "$host" --bin corral >&2
  echo "target/$host/release/corral"
else
  cargo build --quiet --release --bin corral >&2
  echo "target/release/corral"
fi
