#!/usr/bin/env bash
# Whole-process wall time of one sandboxed `/bin/true`: corral exec (overlay
# rootfs) against podman, crun, bwrap and plain unshare, in one run, with
# hyperfine. Prints mean and min of each, the machine load, and the ratios
# the project targets, each marked met or MISSED:
#   podman/corral >= 40, crun/corral >= 2, corral/bwrap <= 1, corral/unshare <= 1.5
# Twice: back to back, and isolated (a 5 ms pause before each run, so no
# tool's previous run is still being torn down by the kernel: corral's
# network namespace goes in a kernel worker after corral has exited).
# Usage: scripts/bench-exec.sh [RUNS]   (CORRAL=path to a corral; default: scripts/build.sh;
#        BENCH_ROUNDS=4: the runs of each tool are spread over that many rounds)
# Run it as root to measure podman and crun too (see the host quirks below).
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-30}

# crun (alone and under podman) refuses this host's cgroup v2 "unified"
# mount holding only hugetlb; hide it in a private mount namespace for the
# whole benchmark. Nothing outside that namespace changes.
if [ "$(id -u)" -eq 0 ] && [ -z "${BENCH_IN_NS:-}" ] && mountpoint -q /sys/fs/cgroup/unified 2>/dev/null; then
  exec env BENCH_IN_NS=1 unshare --mount --propagation private bash -c \
    'umount /sys/fs/cgroup/unified && exec "$0" "$@"' "$0" "$@"
fi

for tool in hyperfine jq busybox; do
  command -v "$tool" >/dev/null || { echo "bench-exec: $tool is required" >&2; exit 1; }
done
# The binary as installed (scripts/build.sh: static release build).
corral=${CORRAL:-$(bash scripts/build.sh)}

work=$(mktemp -d /tmp/corral-bench.XXXXXX)
image=localhost/corral-bench-busybox:latest
cleanup() {
  # Before removing $work: podman needs the containers.conf in it.
  if [ -n "${imported:-}" ]; then podman rmi -f "$image" >/dev/null 2>&1 || true; fi
  rm -rf "$work"
}
declare -A cmds
trap cleanup EXIT
rootfs=$work/rootfs
mkdir -p "$rootfs/bin" "$rootfs/etc" "$rootfs/proc" "$rootfs/dev" "$rootfs/sys" "$rootfs/tmp"
cp "$(command -v busybox)" "$rootfs/bin/busybox"
for applet in $(busybox --list); do
  [ "$applet" = busybox ] || ln -s busybox "$rootfs/bin/$applet"
done
chmod -R a+rX "$work"

# `corral` is the target's command, `corral exec IMAGE true` on a warm image
# (imported below from the same rootfs; `--rootfs DIR` until then).
cmds[corral]="$corral --store $work/store exec --rootfs $rootfs --network none -- /bin/true"
cmds[corral-rootfs]=${cmds[corral]}
cmds[corral-egress]="$corral --store $work/store exec --rootfs $rootfs -- /bin/true"
cmds[unshare]="unshare --user --map-root-user --mount --pid --fork true"
if command -v bwrap >/dev/null; then
  cmds[bwrap]="bwrap --unshare-all --bind $rootfs / --proc /proc --dev /dev /bin/true"
fi
if command -v crun >/dev/null; then
  mkdir -p "$work/bundle"
  (cd "$work/bundle" && crun spec $([ "$(id -u)" -eq 0 ] || echo --rootless))
  jq --arg root "$rootfs" '.process.args = ["/bin/true"] | .process.terminal = false | .root.path = $root | .root.readonly = false' \
    "$work/bundle/config.json" > "$work/bundle/config.new" && mv "$work/bundle/config.new" "$work/bundle/config.json"
  cmds[crun]="crun run --bundle $work/bundle corral-bench-$$"
fi
if command -v podman >/dev/null; then
  # Podman's default ulimits (RLIMIT_NOFILE/NPROC raised to 1M) need
  # CAP_SYS_RESOURCE, which root lacks on some hosts: keep the caller's
  # limits, as corral, bwrap and crun do. No cgroup either (like the others).
  printf '[containers]\ndefault_ulimits = []\n' >"$work/containers.conf"
  export CONTAINERS_CONF=$work/containers.conf
  if tar -C "$rootfs" -c . | podman import --quiet - "$image" >/dev/null 2>&1; then
    imported=1
    cmds[podman]="podman run --rm --network none --cgroups=disabled $image /bin/true"
    if podman save --quiet --format oci-archive -o "$work/image.tar" "$image" &&
      "$corral" --store "$work/store" --quiet import --name "$image" "$work/image.tar" >/dev/null; then
      cmds[corral]="$corral --store $work/store exec --network none $image -- /bin/true"
    else
      echo "bench-exec: corral import failed; measuring corral with --rootfs" >&2
    fi
  else
    echo "bench-exec: podman import failed; skipping podman" >&2
  fi
fi

echo "load at start: $(uptime)"
echo "corral: ${cmds[corral]}"
# Rounds: every tool runs a share of its runs in each round, so that a
# machine that gets busier or quieter during the benchmark weighs on all
# tools alike rather than on whichever ran at that moment.
rounds=${BENCH_ROUNDS:-4}
names=(corral corral-rootfs corral-egress unshare bwrap crun podman)
modes=(b2b iso)
for round in $(seq "$rounds"); do
  for mode in "${modes[@]}"; do
    prepare=()
    [ "$mode" = iso ] && prepare=(--prepare "sleep 0.005")
    for name in "${names[@]}"; do
      [ -n "${cmds[$name]:-}" ] || continue
      n=$runs
      [ "$name" = podman ] && n=$(( runs < 12 ? runs : 12 ))
      [ "$name" = corral-egress ] && n=$(( runs < 16 ? runs : 16 ))
      n=$(( (n + rounds - 1) / rounds ))
      hyperfine -N --style none --warmup 2 --runs "$n" "${prepare[@]}" \
        --export-json "$work/$name.$mode.$round.json" "${cmds[$name]}" >"$work/$name.log" 2>&1 ||
        { echo "bench-exec: $name failed: ${cmds[$name]}: $(grep -m1 -iE "error|failed" "$work/$name.log")" >&2; unset "cmds[$name]"; continue; }
    done
  done
done
for mode in "${modes[@]}"; do
  case $mode in b2b) echo "== back to back" ;; iso) echo "== isolated (5 ms pause before each run)" ;; esac
  for name in "${names[@]}"; do
    [ -n "${cmds[$name]:-}" ] || continue
    # All rounds' times together, in hyperfine's shape.
    jq -s '[.[].results[0].times[]] | sort | {results: [{mean: (add / length), min: .[0], median: .[length / 2 | floor], runs: length}]}' \
      "$work/$name.$mode".*.json >"$work/$name.$mode.json"
    jq -r --arg n "$name" '.results[0] | "\($n)\tmean \(.mean*1000 | .*100|round/100) ms\tmin \(.min*1000 | .*100|round/100) ms\tmedian \(.median*1000 | .*100|round/100) ms\t(\(.runs) runs)"' "$work/$name.$mode.json"
  done
done

# Means are what the targets are about; minimums are shown too because on
# a shared, loaded machine they are the stable part of the distribution.
stat() { jq -r ".results[0].$2" "$work/$1.$mode.json"; }
ratio() { # LABEL OTHER over|under TARGET: other/corral or corral/other
  [ -n "${cmds[$2]:-}" ] || { echo "$1: $2 not measured"; missed=$((missed + 1)); return; }
  local k line
  for k in mean min; do
    local c o
    c=$(stat corral "$k"); o=$(stat "$2" "$k")
    if [ "$3" = over ]; then
      line=$(awk -v a="$o" -v b="$c" -v t="$4" -v l="$1" -v k="$k" 'BEGIN { r=a/b; printf "%-18s %-4s %6.2fx (target >= %s) %s\n", l, k, r, t, (r>=t ? "met" : "MISSED") }')
    else
      line=$(awk -v a="$c" -v b="$o" -v t="$4" -v l="$1" -v k="$k" 'BEGIN { r=a/b; printf "%-18s %-4s %6.2fx (target <= %s) %s\n", l, k, r, t, (r<=t ? "met" : "MISSED") }')
    fi
    echo "$line"
    if [ "$k" = mean ]; then
      case $line in *MISSED) missed=$((missed + 1)) ;; *) met=$((met + 1)) ;; esac
    fi
  done
}
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg) ($(nproc) cpus)"
summary=()
for mode in "${modes[@]}"; do
  case $mode in b2b) label="back to back" ;; iso) label="isolated" ;; esac
  echo "== ratios, $label"
  met=0
  missed=0
  ratio "podman / corral" podman over 40
  ratio "crun / corral" crun over 2
  ratio "corral / bwrap" bwrap under 1
  ratio "corral / unshare" unshare under 1.5
  summary+=("$label $met of 4")
done
echo "targets met (by mean): ${summary[0]}; ${summary[1]}"
