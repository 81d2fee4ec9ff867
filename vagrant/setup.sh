#!/usr/bin/env bash
# vagrant/setup.sh — turn a fresh Debian 12 host into a labkit lab host. Run as root.
#
# The one set-up script: the Vagrantfile provisions with it, the README tells you to run it,
# and CI (.ci/run) runs it. It is idempotent: every step first checks whether there is
# anything to do, so a second run takes seconds and changes nothing.
#
#   1. Debian packages (only the missing ones; apt-get update only then; no recommends —
#      recommends once pulled in a whole kernel image). The packages' own daemons (docker,
#      containerd, docker-registry) must not start: the lab runs its own on its own sockets.
#   2. A virtualenv at /opt/labkit/venv (Debian's python3) with labkit installed editable from
#      this checkout (JupyterLab included: it is one of labkit's dependencies), re-installed
#      only when pyproject.toml changes (a stamp keeps its hash).
#   3. The console commands (labkit, labkit-runc, …) linked into /usr/local/bin.
#   4. The lab images (hello-world, busybox) built offline and pushed into the lab registry.
#
# Usage: vagrant/setup.sh [--no-images] [--vm] [--jupyter]      (from any directory)
#   --no-images   skip step 4
#   --vm          this machine IS the class VM (the Vagrantfile says so): leave out the tools
#                 that only a host *of* VMs needs (vagrant, ~200 Ruby packages). Remembered in
#                 /etc/labkit/role, so later runs (README's commands) leave them out too.
#   --packages    print the Debian packages this machine's role needs, one per line, and stop
#   --jupyter     accepted for older instructions; JupyterLab is always installed now
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV=/opt/labkit/venv
STAMP="$VENV/.labkit-install-stamp"
COMMANDS=(labkit labkit-runc labkit-shim labkit-containerd labkit-dockerd labkit-registry labkit-ctr)
# chromium: tests/slides shows each slide deck in it, headless, to measure the diagrams' labels
# at a projector's 1280x720 (and instructors can screenshot slides with it); podman and buildah:
# tests/runc runs them with --runtime labkit-runc, as with runc; docker-compose: tests/dockerd
# brings up a two-service file on a user network with it (Debian's 1.29)
PACKAGES=(python3 python3-venv python3-dev gcc libc6-dev libcap-dev runc crun docker.io
          containerd skopeo umoci docker-registry busybox-static graphviz iproute2 iptables
          ca-certificates git chromium podman buildah docker-compose
          curl)   # the notebooks speak HTTP to the registry and dockerd with it (06, 09)
# Only where VMs are made (a developer's or CI's Debian host): tests/lab/test_vagrant.py runs
# `vagrant validate` on the Vagrantfile. Inside the class VM it is skipped, saying why.
HOST_PACKAGES=(vagrant)
ROLE_FILE=${LABKIT_ROLE_FILE:-/etc/labkit/role}   # the variable: for tests
# the units the packages above would run; the lab must not share their default sockets
UNITS=(docker.service docker.socket containerd.service docker-registry.service)

WITH_IMAGES=1
PRINT_PACKAGES=0
ROLE=host
[[ "$(cat "$ROLE_FILE" 2>/dev/null)" == vm ]] && ROLE=vm
for arg in "$@"; do
    case "$arg" in
        --no-images) WITH_IMAGES=0 ;;
        --vm) ROLE=vm ;;
        --packages) PRINT_PACKAGES=1 ;;
        --jupyter) ;;   # JupyterLab is a dependency of labkit now: nothing extra to do
        -h|--help) sed -n '2,23p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "setup.sh: unknown option '$arg' (try --help)" >&2; exit 2 ;;
    esac
done

[[ $ROLE == host ]] && PACKAGES+=("${HOST_PACKAGES[@]}")
if (( PRINT_PACKAGES )); then printf '%s\n' "${PACKAGES[@]}"; exit 0; fi

if [[ $(id -u) -ne 0 ]]; then
    echo "setup.sh: run me as root (sudo $0): I install packages and write /opt and /usr/local" >&2
    exit 1
fi

summary=()
note() { summary+=("$1"); echo "setup: $1"; }

# --- 1. packages ---------------------------------------------------------------------------
if [[ $ROLE == vm && "$(cat "$ROLE_FILE" 2>/dev/null)" != vm ]]; then
    mkdir -p "$(dirname "$ROLE_FILE")" && echo vm > "$ROLE_FILE"
    note "role: the class VM (recorded in $ROLE_FILE): ${HOST_PACKAGES[*]} left out"
fi
missing=()
for p in "${PACKAGES[@]}"; do
    if [[ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" != "install ok installed" ]]; then
        missing+=("$p")
    fi
done

have_systemd=0
[[ -d /run/systemd/system ]] && have_systemd=1
# Units running before we touch anything belong to someone else: never stop those.
already_active=()
if (( have_systemd )); then
    for u in "${UNITS[@]}"; do
        systemctl is-active --quiet "$u" 2>/dev/null && already_active+=("$u")
    done
fi

if (( ${#missing[@]} )); then
    note "installing ${#missing[@]} package(s): ${missing[*]}"
    # policy-rc.d exit 101 = "do not start services" for every maintainer script of this run.
    policy=/usr/sbin/policy-rc.d
    backup=""
    if [[ -e $policy ]]; then backup="$(mktemp)"; cp -p "$policy" "$backup"; fi
    restore_policy() {
        if [[ -n $backup ]]; then mv -f "$backup" "$policy"; else rm -f "$policy"; fi
    }
    trap restore_policy EXIT
    printf '#!/bin/sh\n# written by labkit vagrant/setup.sh during apt-get install\nexit 101\n' > "$policy"
    chmod 755 "$policy"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${missing[@]}"
    restore_policy
    trap - EXIT
else
    note "packages: all ${#PACKAGES[@]} present"
fi

if (( have_systemd )); then
    for u in "${UNITS[@]}"; do
        if [[ " ${already_active[*]} " == *" $u "* ]]; then
            note "$u was already running before set-up: left alone"
            continue
        fi
        if systemctl is-enabled --quiet "$u" 2>/dev/null || systemctl is-active --quiet "$u" 2>/dev/null; then
            systemctl disable --now "$u" >/dev/null 2>&1 || true
            note "disabled $u (the lab runs its own daemons)"
        fi
    done
fi

# --- 2. virtualenv -------------------------------------------------------------------------
if [[ ! -x $VENV/bin/python ]]; then
    /usr/bin/python3 -m venv "$VENV"
    note "created virtualenv $VENV"
fi
# Editable in "compat" mode: a plain path in a .pth file. The default mode installs an import
# hook whose own imports (pathlib, re, urllib…) cost every labkit process ~20 ms at start-up,
# and a container start runs five of them (shim, runtime create/start/delete…).
want="$(sha256sum "$REPO/pyproject.toml" | cut -d' ' -f1) compat $REPO"
if [[ "$(cat "$STAMP" 2>/dev/null)" != "$want" ]]; then
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-input \
        --config-settings editable_mode=compat -e "$REPO[test]"
    echo "$want" > "$STAMP"
    note "installed labkit (editable) from $REPO into $VENV"
else
    note "labkit already installed from $REPO (pyproject.toml unchanged)"
fi

# --- 3. commands on PATH -------------------------------------------------------------------
linked=0
for c in "${COMMANDS[@]}"; do
    if [[ "$(readlink "/usr/local/bin/$c" 2>/dev/null)" != "$VENV/bin/$c" ]]; then
        ln -sfn "$VENV/bin/$c" "/usr/local/bin/$c"
        linked=$((linked + 1))
    fi
done
(( linked )) && note "linked $linked command(s) into /usr/local/bin"
# A docker CLI: Debian's docker.io brings /usr/bin/docker; a newer one in /usr/local/bin wins.
if docker_cli="$(command -v docker)"; then
    note "docker CLI: $docker_cli ($("$docker_cli" --version 2>/dev/null || echo unknown version))"
else
    echo "setup.sh: no docker CLI found although docker.io is installed" >&2
    exit 1
fi

# --- 4. lab images -------------------------------------------------------------------------
if (( WITH_IMAGES )); then
    # Starts the lab registry if it is not running, pushes, and leaves it as it was.
    (cd "$REPO" && "$VENV/bin/python" -m labkit.cli.main lab images)
    note "lab images pushed into the lab registry"
fi

echo
echo "labkit set-up done:"
printf '  - %s\n' "${summary[@]}"
echo "next: labkit lab up && DOCKER_HOST=unix:///run/labkit/docker.sock docker run hello-world"
echo "      labkit lab status    # JupyterLab's URL with its token"
