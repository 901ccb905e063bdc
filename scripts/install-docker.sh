#!/bin/sh
# Make sure a Docker engine answers, on a Debian machine where we are root.
#
# Idempotent: does nothing when `docker info` already works. Otherwise installs
# docker.io (and debootstrap, which `localcode setup` needs to make the base image
# where Docker Hub cannot be reached) with apt, starts dockerd in the background if
# it is not running, and waits until it answers.
#
# Usage: sh scripts/install-docker.sh        (CI calls it before `localcode setup`)
set -eu

log() { echo "install-docker: $*" >&2; }

if docker info >/dev/null 2>&1; then
    command -v debootstrap >/dev/null 2>&1 || {
        log "Docker answers; installing debootstrap"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
    }
    log "Docker engine already answers"
    exit 0
fi

if [ "$(id -u)" != 0 ]; then
    log "Docker is not reachable and installing it needs root: run this script as root, or start Docker yourself"
    exit 1
fi

missing=""
command -v dockerd >/dev/null 2>&1 || missing="$missing docker.io"
command -v debootstrap >/dev/null 2>&1 || missing="$missing debootstrap"
if [ -n "$missing" ]; then
    log "installing:$missing"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

if ! grep -qx dockerd /proc/[0-9]*/comm 2>/dev/null; then
    log "starting dockerd (log: /var/log/dockerd.log)"
    # Not through systemd: CI machines and containers often have no init system.
    nohup dockerd >/var/log/dockerd.log 2>&1 &
fi

i=0
until docker info >/dev/null 2>&1; do
    i=$((i + 1))
    if [ "$i" -gt 60 ]; then
        log "dockerd did not answer within 60 s: see /var/log/dockerd.log"
        tail -n 20 /var/log/dockerd.log >&2 || true
        exit 1
    fi
    sleep 1
done
log "Docker engine answers ($(docker version --format '{{.Server.Version}}' 2>/dev/null || echo '?'))"
