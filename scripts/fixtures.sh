#!/usr/bin/env bash
# Builds every fixture image (scripts/fixtures/*.sh) into OUTDIR, without
# Docker. Each builder writes OUTDIR/layouts/NAME (an OCI layout) and
# OUTDIR/layouts/NAME.ref (the repository:tag the registry script pushes it as).
set -euo pipefail
out=${1:?usage: fixtures.sh OUTDIR}
mkdir -p "$out" && out=$(cd "$out" && pwd) # relative to the caller, not to scripts/
cd "$(dirname "$0")"
mkdir -p "$out/layouts"
for builder in fixtures/*.sh; do
  [ -e "$builder" ] || continue
  bash "$builder" "$out"
done
