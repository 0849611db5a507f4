#!/usr/bin/env bash
# Sets up a fresh Debian/Ubuntu machine (as root) and runs Skiff's main job: installs what is
# missing, builds Skiff (release), creates a local cluster with `skiffctl cluster create` (one
# node by default: a network namespace with its own Docker engine, kubelet and proxy; the
# control plane beside it), loads the example image into it, applies the seed's example (a
# ReplicationController, a Deployment and a NodePort Service) with the real kubectl, and shows
# the pods running and the Service answering through its NodePort.
#
# SKIFF_NODES (default 1) sets the number of nodes; SKIFF_CLUSTER (default skiff) the name.
# Running it again recreates the cluster.
set -euo pipefail
cd "$(dirname "$0")/.."

NAME=${SKIFF_CLUSTER:-skiff}
NODES=${SKIFF_NODES:-1}

bash deploy/install-deps.sh
echo "== building Skiff (release)"
cargo build --release -p skiff-apiserver -p skiff-scheduler -p skiff-controller-manager \
    -p skiff-kubelet -p skiff-proxy -p skiffctl
SKIFFCTL=target/release/skiffctl

# No registry is reachable: the example image is busybox on an empty base, built here.
if ! docker image inspect skiff-local/busybox:1 >/dev/null 2>&1; then
    echo "== building the example image skiff-local/busybox:1"
    ctx=$(mktemp -d)
    cp /bin/busybox "$ctx/busybox"
    printf 'FROM scratch\nCOPY busybox /bin/busybox\nRUN ["/bin/busybox", "--install", "-s", "/bin"]\n' >"$ctx/Dockerfile"
    docker build -q -t skiff-local/busybox:1 "$ctx" >/dev/null
    rm -rf "$ctx"
fi

"$SKIFFCTL" cluster delete --name "$NAME" >/dev/null
echo "== skiffctl cluster create --name $NAME --nodes $NODES"
"$SKIFFCTL" cluster create --name "$NAME" --nodes "$NODES"
"$SKIFFCTL" cluster load-image --name "$NAME" skiff-local/busybox:1

echo "== kubectl get nodes -o wide"
kubectl get nodes -o wide
echo "== kubectl apply -f deploy/examples/nginx.yaml"
kubectl apply -f deploy/examples/nginx.yaml
kubectl rollout status deployment/web --timeout=120s
kubectl wait --for=condition=Ready pod -l app=nginx --timeout=120s
echo "== kubectl get pods -o wide"
kubectl get pods -o wide
echo "== kubectl get rc,deploy,svc"
kubectl get rc,deploy,svc
NODE_IP=$(kubectl get nodes -o jsonpath='{.items[0].status.addresses[?(@.type=="InternalIP")].address}')
echo "== curl http://$NODE_IP:30080/ (the web Service's NodePort)"
for _ in $(seq 1 50); do
    curl -sS --max-time 2 "http://$NODE_IP:30080/" 2>/dev/null && break
    sleep 0.2
done
echo
echo "The cluster \"$NAME\" runs; kubectl's current context is skiff-$NAME."
echo "  skiffctl: $SKIFFCTL cluster list | logs --name $NAME | delete --name $NAME"
