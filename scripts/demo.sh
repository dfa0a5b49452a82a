#!/usr/bin/env bash
# The first thing to try: builds corral and runs examples/offline.yaml, a
# pipeline that needs no network and no registry (a Background web server,
# a Run step that waits for it, parallel checks, an output variable).
#
#   bash scripts/demo.sh            as root: installs what is missing first
#   CORRAL_DEMO_PROFILE=dev bash scripts/demo.sh   debug build (faster to build)
#
# Exits non-zero, saying why, if anything fails, including the run itself.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { echo "demo: $*" >&2; }
die() {
  say "FAILED: $*"
  exit 1
}

# busybox (httpd, wget) runs the example's steps; jq checks its events;
# nasm and autotools build ISA-L (corral's gzip inflater, crate isal-sys).
# libc6-dev, musl-tools: static libc for the static release binary (build.sh).
packages=(busybox-static jq util-linux nasm autoconf automake libtool make libc6-dev musl-tools)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
    say "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    die "missing packages: ${missing[*]} (as root: apt-get install ${missing[*]})"
  fi
fi
command -v cargo >/dev/null || die "cargo not found: install Rust (https://rustup.rs) first"
if ! unshare --user --map-root-user --net true 2>/dev/null; then
  die "this host does not allow user namespaces; check user.max_user_namespaces, kernel.unprivileged_userns_clone and AppArmor's userns restriction (or run as root)"
fi

profile=${CORRAL_DEMO_PROFILE:-release}
say "building corral ($profile)"
case $profile in
release) corral=$(bash scripts/build.sh) ;; # as installed: static, musl where it can be
dev)
  cargo build --quiet --bin corral
  corral=target/debug/corral
  ;;
*) die "CORRAL_DEMO_PROFILE must be release or dev, not $profile" ;;
esac

work=$(mktemp -d "${TMPDIR:-/tmp}/corral-demo.XXXXXX")
events=$work/events.jsonl
say "running: corral run --workspace $work/workspace --events $events examples/offline.yaml"
set +e
"$corral" run --workspace "$work/workspace" --events "$events" examples/offline.yaml
status=$?
set -e
if [ "$status" -ne 0 ]; then
  die "corral run exited with $status (events: $events, workspace: $work/workspace)"
fi

# Check what the run claims against its own records, so a run that "passes"
# without doing the work does not pass the demo.
[ -s "$events" ] || die "corral run wrote no events to $events"
step_status() {
  jq -r --arg step "$1" 'select(.type == "step_exited" and .step == $step) | .status' "$events" | tail -1
}
for step in write_site fetch check_greeting report_size; do
  got=$(step_status "$step")
  [ "$got" = success ] || die "step $step: status '${got:-missing}' in $events, expected success"
done
# -s: one verdict over all events (-e alone judges only the last line).
jq -s -e 'any(.[]; .type == "log" and .step == "fetch" and (.line | contains("Hello from corral")))' \
  "$events" >/dev/null || die "the fetch step never printed the page (see $events)"
jq -s -e 'any(.[]; .type == "run_finished" and .exit_code == 0)' "$events" >/dev/null ||
  die "no run_finished event with exit_code 0 in $events"
grep -q "Hello from corral" "$work/workspace/page.html" ||
  die "the workspace has no fetched page ($work/workspace/page.html)"
say "ok: the pipeline served, fetched and checked its page (workspace and events kept in $work)"
