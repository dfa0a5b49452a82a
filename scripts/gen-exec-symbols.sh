#!/usr/bin/env bash
# Regenerates scripts/exec-symbols.txt, the link order scripts/build.sh
# gives rust-lld: the functions a `corral exec` runs, in the order they
# first ran, so that they sit side by side in the binary.
#
# Why: every page of code a process touches first costs a page fault (the
# kernel maps up to 16 neighbouring pages of a file per fault), and a
# `corral exec` touches code all over its 8 MB of text: about 100 faults in
# corral and 60 more in the sandbox's init, which is forked from it and
# does not inherit the mappings of the code (fork copies no page tables of
# unwritten file mappings). With these functions packed together, 60 and
# 28 (at about 3 us each on the VMs we measure on, and both on the path of
# every sandbox start).
#
# How: perf samples the user-space instructions of a few thousand
# `corral exec` runs of a busybox image; each sample's address is mapped to
# its function with nm. Functions too short-lived to be sampled keep their
# place; a stale list (renamed functions, new dependency versions) only
# places fewer functions. Run it after changing what `corral exec` does.
#
# Usage: scripts/gen-exec-symbols.sh [RUNS]   (needs perf from linux-perf,
#        and umoci from scripts/setup-host.sh for the busybox image; run as
#        root or with perf_event_paranoid <= 1)
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-2000}
for tool in perf nm; do
  command -v "$tool" >/dev/null || { echo "gen-exec-symbols: $tool is required (apt-get install linux-perf binutils)" >&2; exit 1; }
done

corral=$(bash scripts/build.sh)
fixtures=${CORRAL_TEST_FIXTURES:-target/corral-fixtures}
bash scripts/fixtures/rt-busybox.sh "$fixtures" >&2
work=$(mktemp -d "${TMPDIR:-/tmp}/corral-symbols.XXXXXX")
trap 'rm -rf "$work"' EXIT
image=localhost/corral-symbols-busybox:latest
"$corral" --store "$work/store" -q import --name "$image" "$fixtures/layouts/rt-busybox" >/dev/null

# The networks a sandbox can have take different paths; none is what the
# benchmark measures and gets most of the runs.
cat >"$work/runs.sh" <<EOF
for i in \$(seq $runs); do
  "$corral" --store "$work/store" exec --network none "$image" -- /bin/true
  [ \$((i % 8)) -ne 0 ] || "$corral" --store "$work/store" exec --network host -e A=1 "$image" -- /bin/true
  [ \$((i % 16)) -ne 0 ] || "$corral" --store "$work/store" exec "$image" -- /bin/true 2>/dev/null
done
EOF
perf record -q -o "$work/perf.data" -F 25000 -e cpu-clock:u -- bash "$work/runs.sh" >/dev/null
perf script -i "$work/perf.data" -F comm,ip 2>/dev/null | awk '$1 ~ /^corral/ {print $2}' >"$work/ips"
nm -n --defined-only "$corral" | awk '$2 ~ /^[tTwW]$/ {print $1, $3}' >"$work/symbols"

# Each function once, in the order of its first sample (the symbol table,
# sorted by address, maps a sample to its function).
python3 - "$work/symbols" "$work/ips" >"$work/order" <<'EOF'
import bisect, sys
symbols = [line.split() for line in open(sys.argv[1])]
starts = [int(addr, 16) for addr, _ in symbols]
seen, order = set(), []
for line in open(sys.argv[2]):
    at = bisect.bisect_right(starts, int(line, 16)) - 1
    if at >= 0 and symbols[at][1] not in seen:
        seen.add(symbols[at][1])
        order.append(symbols[at][1])
print("\n".join(order))
EOF
mv "$work/order" scripts/exec-symbols.txt
echo "gen-exec-symbols: $(wc -l <scripts/exec-symbols.txt) functions from $(wc -l <"$work/ips") samples" >&2
