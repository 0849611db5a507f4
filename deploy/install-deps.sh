#!/usr/bin/env bash
# Installs the system packages and Python client Skiff's build and tests need (as root, on
# Debian/Ubuntu). Skips whatever is already there.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

missing=()
command -v etcd >/dev/null || missing+=(etcd-server)
command -v protoc >/dev/null || missing+=(protobuf-compiler)
command -v dockerd >/dev/null || missing+=(docker.io)
[ -x /bin/busybox ] || missing+=(busybox-static)
command -v iptables-restore >/dev/null || missing+=(iptables)
command -v ip >/dev/null || missing+=(iproute2)
command -v curl >/dev/null || missing+=(curl)
command -v conntrack >/dev/null || missing+=(conntrack)
command -v nsenter >/dev/null || missing+=(util-linux)
command -v cc >/dev/null || missing+=(build-essential)
command -v pkg-config >/dev/null || missing+=(pkg-config)
# The packaging and its tests: systemd-analyze verifies the units, dpkg-shlibdeps (dpkg-dev)
# finds the package's library dependencies, debootstrap makes the Debian root the .deb is
# installed in.
command -v systemd-analyze >/dev/null || missing+=(systemd)
command -v dpkg-shlibdeps >/dev/null || missing+=(dpkg-dev)
command -v debootstrap >/dev/null || missing+=(debootstrap)
python3 -m pip --version >/dev/null 2>&1 || missing+=(python3-pip)
if [ ${#missing[@]} -gt 0 ]; then
    echo "== installing ${missing[*]}"
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# The kubelet and its tests need a running Docker engine.
if ! docker info >/dev/null 2>&1; then
    echo "== starting dockerd (log in /var/log/skiff-dockerd.log)"
    nohup /usr/sbin/dockerd >/var/log/skiff-dockerd.log 2>&1 &
    for _ in $(seq 1 60); do
        docker info >/dev/null 2>&1 && break
        sleep 1
    done
    docker info >/dev/null 2>&1 || { echo "dockerd did not start; see /var/log/skiff-dockerd.log"; exit 1; }
fi

if ! python3 -c 'import kubernetes' 2>/dev/null; then
    echo "== installing the official Kubernetes Python client"
    # Debian's own Python refuses pip installs outside a venv (PEP 668) unless told otherwise.
    python3 -m pip install -q --root-user-action=ignore kubernetes 2>/dev/null \
        || python3 -m pip install -q --root-user-action=ignore --break-system-packages kubernetes
    python3 -c 'import kubernetes' || { echo "could not install the kubernetes Python client"; exit 1; }
fi

if ! command -v cargo-nextest >/dev/null && ! cargo nextest --version >/dev/null 2>&1; then
    echo "== installing cargo-nextest"
    cargo install -q cargo-nextest --locked
fi
