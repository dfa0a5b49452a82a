#!/usr/bin/env bash
# Starts or stops a real registry (Debian's docker-registry) on 127.0.0.1 on
# a free port, and pushes every fixture layout into it.
#   registry.sh start DIR FIXTURES   prints 127.0.0.1:PORT
#   registry.sh stop DIR
set -euo pipefail
cmd=${1:?usage: registry.sh start|stop DIR [FIXTURES]}
dir=${2:?registry state directory}

case "$cmd" in
start)
  fixtures=${3:-}
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  mkdir -p "$dir/data"
  cat >"$dir/config.yml" <<CFG
version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: $dir/data
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$port
CFG
  docker-registry serve "$dir/config.yml" >"$dir/log" 2>&1 &
  echo $! >"$dir/pid"
  for _ in $(seq 100); do
    curl -fsS "http://127.0.0.1:$port/v2/" >/dev/null 2>&1 && break
    sleep 0.1
  done
  curl -fsS "http://127.0.0.1:$port/v2/" >/dev/null || { cat "$dir/log" >&2; exit 1; }
  if [ -n "$fixtures" ] && [ -d "$fixtures/layouts" ]; then
    for ref in "$fixtures"/layouts/*.ref; do
      [ -e "$ref" ] || continue
      layout=${ref%.ref}
      skopeo copy --quiet --all --preserve-digests --dest-tls-verify=false \
        "oci:$layout" "docker://127.0.0.1:$port/$(cat "$ref")" >&2
    done
  fi
  echo "127.0.0.1:$port"
  ;;
stop)
  if [ -f "$dir/pid" ]; then
    kill "$(cat "$dir/pid")" 2>/dev/null || true
  fi
  ;;
*)
  echo "registry.sh: unknown command $cmd" >&2
  exit 2
  ;;
esac
