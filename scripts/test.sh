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

cargo build --all-targets
echo "== tests as $(id -un)"
cargo nextest run --no-fail-fast --failure-output final

if [ "$(id -u)" -ne 0 ]; then
  exit 0
fi

# Rootless pass: copy the binaries somewhere every user can read, so that a
# checkout under /root works too, and run them as each test user.
drop=$(mktemp -d /tmp/corral-rootless.XXXXXX)
trap 'cleanup; rm -rf "$drop"' EXIT
chmod 0755 "$drop"
cp target/debug/corral "$drop/corral"
cp -r tests/fixtures "$drop/fixtures" 2>/dev/null || true
mapfile -t test_bins < <(cargo test --no-run --message-format=json 2>/dev/null |
  jq -r 'select(.reason == "compiler-artifact" and .profile.test == true) | .executable // empty')
mkdir -p "$drop/bin"
for bin in "${test_bins[@]}"; do cp "$bin" "$drop/bin/"; done
chmod -R a+rX "$drop" "$fixtures"
[ -d ../shared ] && shared=$(cd ../shared && pwd) || shared=""

status=0
for user in corral-sub corral-nosub; do
  echo "== tests as $user"
  for bin in "$drop"/bin/*; do
    name=$(basename "$bin")
    if ! runuser -u "$user" -- env -i PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin \
        HOME="/home/$user" USER="$user" CI="${CI:-}" \
        CORRAL_TEST_BIN="$drop/corral" CORRAL_TEST_FIXTURES="$fixtures" \
        CORRAL_TEST_TESTDATA="$drop/fixtures" CORRAL_TEST_SHARED="$shared" \
        CORRAL_TEST_REGISTRY="$CORRAL_TEST_REGISTRY" CORRAL_TEST_USER_PASS=1 \
        "$bin" --test-threads=2 -q; then
      echo "FAILED: $name as $user"
      status=1
    fi
  done
done
exit $status
