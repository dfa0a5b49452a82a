#!/usr/bin/env bash
# Pull benchmark: cold `corral pull` (fetch + unpack) against `podman pull`
# and `skopeo copy` + `umoci unpack`, then a second image sharing the base,
# and corral's peak RSS. Prints times and ratios.
#
#   scripts/bench-pull.sh [CACHE_DIR]     (default /var/tmp/corral-bench)
#
# The Debian minbase rootfs and the image layouts are built once into
# CACHE_DIR. CORRAL_BIN overrides the binary (default: scripts/build.sh).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache=${1:-/var/tmp/corral-bench}
runs=${BENCH_RUNS:-5}
# One untimed run per tool first: the first run after the settle pays for
# cold binaries and caches, whichever tool it is.
warmup=${BENCH_WARMUP:-1}
mkdir -p "$cache"

if [ -z "${CORRAL_BIN:-}" ]; then
  CORRAL_BIN=$here/../$(bash "$here/build.sh")
fi

# 1. A Debian bookworm minbase rootfs (cached).
if [ ! -f "$cache/rootfs.done" ]; then
  rm -rf "$cache/rootfs"
  mirror=$( (grep -hE '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}';
             awk '/^deb / {print $2}' /etc/apt/sources.list 2>/dev/null) | grep -m1 debian || true)
  debootstrap --variant=minbase bookworm "$cache/rootfs" "${mirror:-http://deb.debian.org/debian}" >"$cache/debootstrap.log" 2>&1
  touch "$cache/rootfs.done"
fi

# 2. Two OCI layouts sharing the base layer (cached).
if [ ! -f "$cache/layouts.done" ]; then
  rm -rf "$cache/fixtures"
  mkdir -p "$cache/fixtures/layouts"
  # Trim what images usually drop (docs, man pages, locales, apt lists).
  rm -rf "$cache/rootfs"/usr/share/{doc,man,info,locale}/* "$cache/rootfs"/var/lib/apt/lists/* \
    "$cache/rootfs"/var/cache/apt/*.bin "$cache/rootfs"/var/cache/debconf/*-old
  python3 - "$cache" <<'PY'
import gzip, hashlib, io, json, os, subprocess, sys, tarfile
cache = sys.argv[1]
out = os.path.join(cache, "fixtures", "layouts")

def sha(b): return "sha256:" + hashlib.sha256(b).hexdigest()

def base_tar():
    # GNU tar of the rootfs, numeric owners, sorted, fixed mtime: reproducible.
    return subprocess.run(
        ["tar", "--sort=name", "--numeric-owner", "--mtime=@1700000000", "--xattrs",
         "-C", os.path.join(cache, "rootfs"), "-cf", "-", "."],
        stdout=subprocess.PIPE, check=True).stdout

def small_layer(tag):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for i in range(200):
            data = (f"{tag} file {i}\n" * 50).encode()
            ti = tarfile.TarInfo(f"opt/{tag}/f{i:03d}"); ti.size = len(data); ti.mtime = 1700000000
            t.addfile(ti, io.BytesIO(data))
    return buf.getvalue()

base = base_tar()
base_gz = subprocess.run(["gzip", "-6", "-n", "-c"], input=base, stdout=subprocess.PIPE, check=True).stdout
for name, extra in [("bench-a", ["app-a"]), ("bench-b", ["app-b", "tools-b"])]:
    layout = os.path.join(out, name)
    os.makedirs(os.path.join(layout, "blobs", "sha256"), exist_ok=True)
    def blob(b):
        d = sha(b)
        with open(os.path.join(layout, "blobs", "sha256", d[7:]), "wb") as f: f.write(b)
        return d
    layers = [(base, base_gz)] + [(r, gzip.compress(r, mtime=0)) for r in (small_layer(t) for t in extra)]
    descs = [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": blob(gz), "size": len(gz)} for _, gz in layers]
    cfg = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["/bin/bash"]},
                      "rootfs": {"type": "layers", "diff_ids": [sha(r) for r, _ in layers]}}).encode()
    man = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                      "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": blob(cfg), "size": len(cfg)},
                      "layers": descs}).encode()
    with open(os.path.join(layout, "oci-layout"), "w") as f: json.dump({"imageLayoutVersion": "1.0.0"}, f)
    with open(os.path.join(layout, "index.json"), "w") as f:
        json.dump({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                   "digest": blob(man), "size": len(man), "annotations": {"org.opencontainers.image.ref.name": "v1"}}]}, f)
    with open(layout + ".ref", "w") as f: f.write(f"bench/{name}:v1\n")
print(f"base layer: {len(base_gz)/1e6:.1f} MB compressed, {len(base)/1e6:.1f} MB uncompressed", file=sys.stderr)
PY
  touch "$cache/layouts.done"
fi

# 3. A local registry holding both images.
# BENCH_WORKDIR: where the stores go (e.g. a tmpfs, to leave the disk out).
work=$(mktemp -d "${BENCH_WORKDIR:-/var/tmp}/corral-bench-run.XXXXXX")
# podman's overlay driver leaves its storage dir mounted on itself.
unmount_under() { awk -v d="$1" 'index($2, d) == 1 {print $2}' /proc/mounts | sort -r | xargs -r -n1 umount -l; }
trap 'bash "$here/registry.sh" stop "$work/registry"; unmount_under "$work"; rm -rf "$work"' EXIT
mkdir -p "$work/registry"
reg=$(bash "$here/registry.sh" start "$work/registry" "$cache/fixtures")
a=$reg/bench/bench-a:v1
b=$reg/bench/bench-b:v1
echo "registry $reg; $(du -sh "$cache/fixtures/layouts/bench-a/blobs" | cut -f1) of blobs per image; corral $CORRAL_BIN"

# Each run starts with an empty store, but the previous one is moved aside,
# not deleted, until the end: on ext4 without a journal (this host), inodes
# freed in the last 60 s are skipped by the allocator with a scan of their
# block group, which made every tool pay for the previous run's `rm -rf`
# (directories most: 0.5-5 ms each instead of 20 us). BENCH_DELETE=1 restores
# the old `rm -rf` between runs.
if [ "${BENCH_DELETE:-0}" = 1 ]; then
  echo 'rm -rf "$1/s"' >"$work/clean.sh"
else
  echo 'if [ -e "$1/s" ]; then mv "$1/s" "$1/old.$(date +%s%N)"; fi' >"$work/clean.sh"
fi
clean="sh $work/clean.sh $work"
# Deletions just before the benchmark (a previous run's cleanup) would
# penalise whichever tool runs first: let them age out.
settle=${BENCH_SETTLE:-65}
echo "settling ${settle}s (BENCH_SETTLE) so recently freed inodes do not skew the first tool"
sync
sleep "$settle"
corral_a="$CORRAL_BIN --store $work/s/corral -q pull $a"
corral_b="$CORRAL_BIN --store $work/s/corral -q pull $a && $CORRAL_BIN --store $work/s/corral -q pull $b"
podman_args="--root $work/s/podman --runroot $work/s/podman-run --storage-driver overlay"
podman_a="podman $podman_args pull -q --tls-verify=false $a >/dev/null"
podman_b="podman $podman_args pull -q --tls-verify=false $a >/dev/null && podman $podman_args pull -q --tls-verify=false $b >/dev/null"
skopeo_a="mkdir -p $work/s && skopeo copy -q --src-tls-verify=false docker://$a oci:$work/s/oci:a && umoci unpack --image $work/s/oci:a $work/s/bundle-a >/dev/null"
skopeo_b="$skopeo_a && skopeo copy -q --src-tls-verify=false docker://$b oci:$work/s/oci:b && umoci unpack --image $work/s/oci:b $work/s/bundle-b >/dev/null"

load_before=$(cut -d' ' -f1-3 /proc/loadavg)
# Rounds interleave the tools (corral, podman, skopeo+umoci, corral, ...) so
# a burst of load or of filesystem work from elsewhere on the host (on ext4
# without a journal, inodes freed by others in the last minute slow every
# inode we create) hits all tools alike instead of one tool's whole series.
rounds() { # NAME CORRAL PODMAN SKOPEO
  local name=$1 r
  for r in $(seq "$runs"); do
    hyperfine -N --style basic --warmup "$([ "$r" = 1 ] && echo "$warmup" || echo 0)" --runs 1 \
      --prepare "$clean" --export-json "$work/$name.$r.json" \
      -n corral "sh -c '$2'" -n podman "sh -c '$3'" -n skopeo+umoci "sh -c '$4'" | grep -E '^(Benchmark|  Time)'
  done
  jq -s '{results: ([.[].results[]] | group_by(.command) | map({command: .[0].command,
      mean: (map(.mean) | add / length), median: (map(.mean) | sort | .[length / 2 | floor])}))}' \
    "$work/$name".*.json >"$work/$name.json"
}
echo "== cold pull of one image ($runs rounds, store wiped before each run)"
rounds one "$corral_a" "$podman_a" "$skopeo_a"
echo "== image A then image B sharing its base"
rounds two "$corral_b" "$podman_b" "$skopeo_b"

$clean
/usr/bin/time -v $CORRAL_BIN --store "$work/s/corral" -q pull "$a" 2>"$work/time.txt"
rss_kb=$(awk -F: '/Maximum resident set size/ {gsub(/ /,"",$2); print $2}' "$work/time.txt")

ratio() { jq -r --arg n "$2" --arg k "$3" '[.results[] | {(.command): .[$k]}] | add | (.[$n] / .corral * 100 | round / 100)' "$1"; }
ms() { jq -r --arg n "$2" --arg k "$3" '.results[] | select(.command == $n) | .[$k] * 1000 | round' "$1"; }
echo
for k in mean median; do
  echo "== summary ($k wall time over $runs rounds)"
  for f in one two; do
    printf '%-4s corral %6s ms | podman %6s ms (%sx) | skopeo+umoci %6s ms (%sx)\n' "$f" \
      "$(ms "$work/$f.json" corral $k)" "$(ms "$work/$f.json" podman $k)" "$(ratio "$work/$f.json" podman $k)" \
      "$(ms "$work/$f.json" skopeo+umoci $k)" "$(ratio "$work/$f.json" skopeo+umoci $k)"
  done
done
echo "corral peak RSS: $((rss_kb / 1024)) MiB (target < 64 MiB); targets: >= 2x podman, >= 5x skopeo+umoci"
# Other work on the host skews every tool; rerun when the load is high.
echo "load average before: $load_before, after: $(cut -d' ' -f1-3 /proc/loadavg) ($(nproc) CPUs); stores in $(df --output=fstype "$work" | tail -1) $work"
