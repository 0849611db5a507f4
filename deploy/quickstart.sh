#!/usr/bin/env bash
# Sets up a fresh Debian/Ubuntu machine (as root) and runs Skiff's main job: builds it, starts
# the apiserver with its embedded store (zero setup, HTTPS, admin kubeconfig), applies the
# example manifests with the real kubectl and shows them.
#
# What runs today: the apiserver. The scheduler, controller-manager, kubelet and proxy arrive
# with later issues, so the example's objects are stored and served but no pods run yet.
set -euo pipefail
cd "$(dirname "$0")/.."

DATA_DIR=${SKIFF_DATA_DIR:-/var/lib/skiff}
PORT=${SKIFF_PORT:-6443}

bash deploy/install-deps.sh
echo "== building Skiff (release)"
cargo build --release -p skiff-apiserver

mkdir -p "$DATA_DIR"
if [ -f "$DATA_DIR/apiserver.pid" ] && kill -0 "$(cat "$DATA_DIR/apiserver.pid")" 2>/dev/null; then
    echo "== stopping the apiserver started earlier"
    kill "$(cat "$DATA_DIR/apiserver.pid")"
    while kill -0 "$(cat "$DATA_DIR/apiserver.pid")" 2>/dev/null; do sleep 0.2; done
fi
rm -f "$DATA_DIR/ready"
echo "== starting skiff-apiserver (data in $DATA_DIR, log in $DATA_DIR/apiserver.log)"
nohup target/release/skiff-apiserver --data-dir "$DATA_DIR" --secure-port "$PORT" \
    --ready-file "$DATA_DIR/ready" >"$DATA_DIR/apiserver.log" 2>&1 &
echo $! >"$DATA_DIR/apiserver.pid"
for _ in $(seq 1 300); do
    [ -s "$DATA_DIR/ready" ] && break
    kill -0 "$(cat "$DATA_DIR/apiserver.pid")" 2>/dev/null || { cat "$DATA_DIR/apiserver.log"; exit 1; }
    sleep 0.1
done
[ -s "$DATA_DIR/ready" ] || { echo "apiserver did not come up; see $DATA_DIR/apiserver.log"; exit 1; }

export KUBECONFIG="$DATA_DIR/admin.kubeconfig"
echo "== kubectl get namespaces"
kubectl get namespaces
echo "== kubectl apply -f deploy/examples/nginx.yaml"
kubectl apply -f deploy/examples/nginx.yaml
echo "== kubectl get rc,deploy,svc"
kubectl get rc,deploy,svc
echo
echo "Skiff's apiserver is running (pid $(cat "$DATA_DIR/apiserver.pid")). Use it with:"
echo "  export KUBECONFIG=$KUBECONFIG"
