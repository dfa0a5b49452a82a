#!/usr/bin/env bash
# Builds the corral binary to install and ship: a release build, linked
# statically. Prints the binary's path on stdout.
#
#   bash scripts/build.sh            # target/<triple>/release/corral
#   CORRAL_BUILD_LIBC=gnu bash scripts/build.sh    # static glibc, not musl
#   CORRAL_BUILD_DYNAMIC=1 bash scripts/build.sh   # plain `cargo build --release`
#
# Why static: every `corral exec` and every step starts our binary, and on a
# dynamically linked one the loader maps libc, libm and libgcc_s and binds
# their symbols first: about 0.9 ms of each start on the 2-vCPU VMs we
# measure on (`corral --version`: 2.1 ms dynamic, 1.2 ms static glibc).
# A static binary also runs on hosts with any libc.
#
# Why musl, where its Rust target and musl-gcc can be had (this script adds
# the target through rustup; scripts/setup-host.sh installs musl-tools):
# glibc's start-up asks the CPU about its features and caches with dozens
# of CPUID instructions, and in a VM each one traps to the hypervisor
# (8.5 us apiece on the VMs we measure on): a static C `return 0` uses
# 0.63 ms of CPU with glibc there and 0.07 ms with musl (perf stat), and
# `corral exec` gains about half a millisecond. musl's allocator is slow at
# bursts of small allocations, which src/arena.rs absorbs. Elsewhere (no rustup, other
# architectures) the build falls back to static glibc.
#
# Position-dependent (relocation-model=static, as build.rs links every
# Linux binary): see build.rs.
#
# Linked by the toolchain's rust-lld, when it has one, with the functions a
# `corral exec` runs placed side by side (scripts/exec-symbols.txt, made by
# scripts/gen-exec-symbols.sh, which says why): about 70 page faults fewer
# per sandbox start. Symbols use Rust's v0 mangling, whose names do not
# change with every edit of the code as the legacy hashes do.
set -euo pipefail
cd "$(dirname "$0")/.."

host=$(rustc -vV | sed -n 's/^host: //p')
flags="-C target-feature=+crt-static -C relocation-model=static"
gcc_ld=$(rustc --print sysroot)/lib/rustlib/$host/bin/gcc-ld
order=$PWD/scripts/exec-symbols.txt
if [ ! -x "$gcc_ld/ld.lld" ]; then
  echo "build: no rust-lld in this Rust toolchain; linking in the default order" >&2
elif [[ $gcc_ld$order == *" "* ]]; then
  echo "build: a space in $gcc_ld or $order; linking in the default order" >&2
else
  flags+=" -C symbol-mangling-version=v0 -C link-arg=-B$gcc_ld -C link-arg=-fuse-ld=lld"
  flags+=" -C link-arg=-Wl,--symbol-ordering-file=$order -C link-arg=-Wl,--no-warn-symbol-ordering"
fi

# The musl twin of a *-linux-gnu host, when it can be built here.
musl_target() {
  [ "${CORRAL_BUILD_LIBC:-musl}" = musl ] || return 1
  case $host in x86_64-unknown-linux-gnu | aarch64-unknown-linux-gnu) ;; *) return 1 ;; esac
  local target=${host%-gnu}-musl
  command -v musl-gcc >/dev/null || { echo "build: musl-gcc missing (apt-get install musl-tools); building with glibc" >&2; return 1; }
  local libdir
  libdir=$(rustc --print target-libdir --target "$target" 2>/dev/null) || libdir=
  if [ ! -d "$libdir" ]; then
    command -v rustup >/dev/null && timeout 120 rustup target add "$target" >&2 ||
      { echo "build: no Rust target $target; building with glibc" >&2; return 1; }
  fi
  echo "$target"
}

build_static() { # TARGET
  # RUSTFLAGS with an explicit --target reach only the target's crates.
  # (target.<triple>.rustflags would also reach build scripts and proc
  # macros when the target is the host, and crt-static cannot build those.)
  # Explicit: errexit does not apply where this is called (after &&).
  RUSTFLAGS="$flags" cargo build --quiet --release --target "$1" --bin corral >&2 || return 1
  echo "target/$1/release/corral"
}

if [ -z "${CORRAL_BUILD_DYNAMIC:-}" ]; then
  if target=$(musl_target); then
    build_static "$target" && exit 0
    echo "build: the musl build failed; building with glibc" >&2
  fi
  case $host in *-linux-gnu*) build_static "$host" && exit 0 ;; esac
fi
cargo build --quiet --release --bin corral >&2
echo "target/release/corral"
