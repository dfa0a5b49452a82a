#!/usr/bin/env bash
# The whole test suite, as CI runs it (`bash .ci/run` calls exactly this).
# As root it also reruns the test binaries as two unprivileged users: one
# with a subuid range and one without.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

if [ "$(id -u)" -eq 0 ]; then
  bash scripts/setup-host.sh
fi

fixtures=${CORRAL_TEST_FIXTURES:-$repo/target/corral-fixtures}
bash scripts/fixtures.sh "$fixtures"
export CORRAL_TEST_FIXTURES=$fixtures

registry_dir=$(mktemp -d /tmp/corral-registry.XXXXXX)
cleanup() {
  bash scripts/registry.sh stop "$registry_dir" || true
  rm -rf "$registry_dir"
}
trap cleanup EXIT
CORRAL_TEST_REGISTRY=$(bash scripts/registry.sh start "$registry_dir" "$fixtures")
export CORRAL_TEST_REGISTRY
echo "test: registry at $CORRAL_TEST_REGISTRY, fixtures in $fixtures"

# One build per run: incremental state would only take disk (0.6 GB).
export CARGO_INCREMENTAL=0
cargo build --all-targets
# Counts of every pass, summed into one closing line.
passed=0
failed=0
count_nextest() { # FILE: nextest's "Summary [..] N tests run: N passed, N failed"
  local counts
  counts=$(awk '/Summary \[/ && /run:/ {p=0; f=0; for (i=1;i<=NF;i++) { if ($(i+1) ~ /^passed/) p=$i; if ($(i+1) ~ /^failed/) f=$i }} END {print p+0, f+0}' "$1")
  passed=$((passed + ${counts% *}))
  failed=$((failed + ${counts#* }))
}
count_libtest() { # FILE: libtest's "test result: ok. N passed; N failed; ..."
  local counts
  counts=$(awk '/^test result:/ {for (i=1;i<=NF;i++) { if ($(i+1) ~ /^passed/) p+=$i; if ($(i+1) ~ /^failed/) f+=$i }} END {print p+0, f+0}' "$1")
  passed=$((passed + ${counts% *}))
  failed=$((failed + ${counts#* }))
}
log_dir=$(mktemp -d /tmp/corral-testlogs.XXXXXX)

echo "== tests as $(id -un)"
status=0
cargo nextest run --no-fail-fast --failure-output final 2>&1 | tee "$log_dir/root.log" || status=1
count_nextest "$log_dir/root.log"

# The binary as shipped (scripts/build.sh: a static release build, musl
# where it can be built) through the tests that lean on it most: exec,
# pulls (name lookup in a static binary), a whole pipeline.
shipped=$repo/$(bash scripts/build.sh)
echo "== shipped binary $shipped"
CORRAL_TEST_BIN=$shipped cargo nextest run --no-fail-fast --failure-output final \
  --test sandbox_exec_image --test image_registry --test run_seed 2>&1 | tee "$log_dir/shipped.log" || status=1
count_nextest "$log_dir/shipped.log"

if [ "$(id -u)" -ne 0 ]; then
  echo "summary: $passed passed, $failed failed"
  exit $status
fi

# Rootless pass: the binaries go somewhere every user can read, so that a
# checkout under /root works too (hard links where /tmp is on the same
# filesystem: the test binaries are hundreds of MB together), and run as
# each test user.
drop=$(mktemp -d /tmp/corral-rootless.XXXXXX)
trap 'cleanup; rm -rf "$drop"' EXIT
chmod 0755 "$drop"
place() { cp -l "$1" "$2" 2>/dev/null || cp "$1" "$2"; }
place target/debug/corral "$drop/corral"
cp -r tests/fixtures "$drop/fixtures" 2>/dev/null || true
mapfile -t test_bins < <(cargo test --no-run --message-format=json 2>/dev/null |
  jq -r 'select(.reason == "compiler-artifact" and .profile.test == true) | .executable // empty')
mkdir -p "$drop/bin"
for bin in "${test_bins[@]}"; do place "$bin" "$drop/bin/"; done
chmod -R a+rX "$drop" "$fixtures"
[ -d ../shared ] && shared=$(cd ../shared && pwd) || shared=""
df -h "$drop" | tail -1 | awk '{print "test: " $4 " free on " $6}'

for user in corral-sub corral-nosub; do
  echo "== tests as $user"
  for bin in "$drop"/bin/*; do
    name=$(basename "$bin")
    # A TMPDIR of its own: whatever the tests or corral leave in it as this
    # user (who cannot remove what it could not write back) is a failure.
    tmp="$drop/tmp-$user"
    install -d -m 0700 -o "$user" -g "$user" "$tmp"
    if ! timeout 900 runuser -u "$user" -- env -i PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin \
        HOME="/home/$user" USER="$user" CI="${CI:-}" TMPDIR="$tmp" \
        CORRAL_TEST_BIN="$drop/corral" CORRAL_TEST_FIXTURES="$fixtures" \
        CORRAL_TEST_TESTDATA="$drop/fixtures" CORRAL_TEST_SHARED="$shared" \
        CORRAL_TEST_REGISTRY="$CORRAL_TEST_REGISTRY" CORRAL_TEST_USER_PASS=1 \
        "$bin" --test-threads=2 -q >"$log_dir/$user-$name.log" 2>&1; then
      echo "FAILED: $name as $user"
      status=1
    fi
    # Each panic with the lines after it (its message), so that CI's log
    # says why a test failed.
    awk '/panicked at/ {n=6} n>0 {print; n--; next}
      /^(SKIP|test result|failures:|    [a-z_:]+$)/' "$log_dir/$user-$name.log"
    count_libtest "$log_dir/$user-$name.log"
    left=$(find "$tmp" -mindepth 1 -maxdepth 2 | head -5)
    if [ -n "$left" ]; then
      echo "FAILED: $name as $user left files behind:"
      echo "$left" | sed 's/^/  /'
      status=1
      failed=$((failed + 1))
    fi
    rm -rf "$tmp"
  done
done
echo "summary: $passed passed, $failed failed"
exit $status
