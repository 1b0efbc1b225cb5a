#!/usr/bin/env bash
# A Docker engine of CI's own, for the container test (tests/deploy/test_container_engine.py).
#
#   bash scripts/ci_docker.sh start    # install docker.io + Compose v2 if missing, start dockerd
#   bash scripts/ci_docker.sh bases    # the Dockerfiles' base images: pull, else build stand-ins
#   bash scripts/ci_docker.sh running  # exit 0 when the engine at $DOCKER_HOST answers
#   bash scripts/ci_docker.sh stop     # stop the dockerd that `start` started, by its pid
#
# The engine is separate from any system one: its own data root, exec root, pidfile and
# socket (unix:///run/diamond-ci/docker.sock), no systemd. Root only (apt-get, dockerd).
#
# Compose v2: Debian 12's docker-compose is v1 and rejects compose.yaml, so the v2 CLI plugin
# comes from Debian 13's docker-compose package, fetched with apt pointed at a private source
# list (the system's apt sources are not changed) and unpacked with dpkg -x.
#
# Base images: where their registry cannot be reached, `bases` builds a stand-in for each,
# from Debian 12 packages (mmdebstrap --variant=minbase, docker import), tagged with the
# exact name the Dockerfile uses. The Dockerfiles themselves stay as they are.
set -euo pipefail

STATE=${DIAMOND_CI_STATE:-/var/lib/diamond-ci}
RUN_DIR=/run/diamond-ci
SOCKET=$RUN_DIR/docker.sock
PIDFILE=$RUN_DIR/dockerd.pid
EXEC_ROOT=$RUN_DIR/exec
DATA_ROOT=$STATE/docker
LOG=$STATE/dockerd.log
PLUGINS=/usr/local/lib/docker/cli-plugins
export DOCKER_HOST=unix://$SOCKET
export DEBIAN_FRONTEND=noninteractive

PYTHON_BASE=python:3.11.15-slim-bookworm
NODE_BASE=node:20.20.2-bookworm-slim

say() { echo "ci_docker: $*" >&2; }

running() { docker version --format '{{.Server.Version}}' >/dev/null 2>&1; }

# The first URI of the system's Debian sources (deb822 or one-line format).
debian_mirror() {
    local uri
    uri=$(sed -n 's/^URIs:[[:space:]]*\([^[:space:]]*\).*/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null \
        | grep -v security | head -n 1 || true)
    if [ -z "$uri" ]; then
        uri=$(awk '$1 == "deb" && $0 !~ /security/ {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
    fi
    [ -n "$uri" ] || { say "no Debian mirror in the system's apt sources"; exit 1; }
    echo "$uri"
}

apt_updated=
apt_install() {
    [ -n "$apt_updated" ] || { apt-get update -qq; apt_updated=1; }
    apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

install_compose() {
    if docker compose version >/dev/null 2>&1; then
        return
    fi
    say "installing the Compose v2 plugin from Debian 13's docker-compose package"
    local dir
    dir=$(mktemp -d)
    mkdir -p "$dir/lists/partial" "$dir/cache/archives/partial" "$dir/sources.list.d"
    cat >"$dir/sources.list.d/trixie.sources" <<EOF
Types: deb
URIs: $(debian_mirror)
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    : >"$dir/sources.list"
    local opts=(-o "Dir::Etc::sourcelist=$dir/sources.list" -o "Dir::Etc::sourceparts=$dir/sources.list.d"
        -o "Dir::State::Lists=$dir/lists" -o "Dir::Cache=$dir/cache" -o "APT::Get::List-Cleanup=0"
        -o "APT::Sandbox::User=root")
    apt-get "${opts[@]}" update -qq
    (cd "$dir" && apt-get "${opts[@]}" download docker-compose >/dev/null)
    dpkg -x "$dir"/docker-compose_*.deb "$dir/root"
    install -D -m 0755 "$dir/root/usr/libexec/docker/cli-plugins/docker-compose" "$PLUGINS/docker-compose"
    rm -rf "$dir"
    docker compose version
}

start() {
    command -v dockerd >/dev/null || { say "installing docker.io"; apt_install docker.io; }
    install_compose
    if running; then
        say "an engine already answers at $DOCKER_HOST"
        return
    fi
    mkdir -p "$RUN_DIR" "$EXEC_ROOT" "$DATA_ROOT"
    say "starting dockerd (data root $DATA_ROOT, log $LOG)"
    # setsid: the daemon outlives this script and is not in CI's process group.
    setsid dockerd --host "$DOCKER_HOST" --data-root "$DATA_ROOT" --exec-root "$EXEC_ROOT" \
        --pidfile "$PIDFILE" >>"$LOG" 2>&1 </dev/null &
    for _ in $(seq 60); do
        if running; then
            say "dockerd $(docker version --format '{{.Server.Version}}') ready, pid $(cat "$PIDFILE")"
            return
        fi
        sleep 1
    done
    say "dockerd did not answer within 60 s; the end of $LOG:"
    tail -n 30 "$LOG" >&2
    exit 1
}

stop() {
    [ -f "$PIDFILE" ] || { say "no $PIDFILE: nothing to stop"; return; }
    local pid
    pid=$(cat "$PIDFILE")
    say "stopping dockerd, pid $pid"
    kill -TERM "$pid" 2>/dev/null || return 0
    for _ in $(seq 30); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 1
    done
    say "dockerd $pid still runs after 30 s"
    exit 1
}

# A Debian 12 root file system with the given packages, imported under the exact base name.
standin() {
    local tag=$1 env=$2 tarball
    shift 2
    tarball=$(mktemp --suffix=.tar)
    local mirror
    mirror=$(debian_mirror)
    # The machine's CA bundle, so that TLS from inside the containers to the package
    # registries trusts what this machine trusts.
    # force-unsafe-io: no fsync per unpacked file (npm alone pulls in hundreds of packages);
    # the tree is packed into a tarball at the end anyway.
    mmdebstrap --quiet --variant=minbase --dpkgopt=force-unsafe-io --include="ca-certificates,$(IFS=,; echo "$*")" \
        --customize-hook='cp /etc/ssl/certs/ca-certificates.crt "$1/etc/ssl/certs/ca-certificates.crt"' \
        --customize-hook='rm -f "$1"/usr/lib/python3*/EXTERNALLY-MANAGED' \
        --customize-hook='if [ -x "$1/usr/bin/python3" ]; then ln -sf python3 "$1/usr/bin/python"; ln -sf pip3 "$1/usr/bin/pip"; fi' \
        --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*' \
        bookworm "$tarball" "deb $mirror bookworm main" "deb $mirror bookworm-updates main"
    docker import --change "ENV $env" --change 'CMD ["bash"]' "$tarball" "$tag" >/dev/null
    rm -f "$tarball"
}

base() {
    local tag=$1
    shift
    if docker image inspect "$tag" >/dev/null 2>&1; then
        say "$tag: present"
        return
    fi
    if timeout 60 docker pull --quiet "$tag" >/dev/null 2>&1; then
        say "$tag: pulled"
        return
    fi
    say "$tag: cannot be pulled; building a stand-in from Debian 12 packages"
    local t0=$SECONDS
    standin "$tag" "$@"
    say "$tag: stand-in built in $((SECONDS - t0)) s"
}

bases() {
    command -v mmdebstrap >/dev/null || apt_install mmdebstrap
    # Side by side: much of each build waits on the network or the disk.
    base "$PYTHON_BASE" "PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8" \
        python3 python3-pip python3-venv &
    local python=$!
    base "$NODE_BASE" "PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin" nodejs npm &
    local node=$!
    local status=0
    wait "$python" || status=1
    wait "$node" || status=1
    return "$status"
}

case "${1:-}" in
start) start ;;
bases) bases ;;
stop) stop ;;
running) running ;;
*)
    echo "usage: $0 start|bases|running|stop" >&2
    exit 2
    ;;
esac
