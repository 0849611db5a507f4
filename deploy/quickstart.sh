#!/usr/bin/env bash
# Sets up a fresh Debian/Ubuntu machine (as root) and runs Skiff's main job: builds it, starts
# the apiserver with its embedded store (zero setup, HTTPS, admin kubeconfig), the scheduler and
# a kubelet on this machine's Docker, runs a pod (the scheduler places it) and shows it Running
# and answering, and applies the example manifests with the real kubectl.
#
# What runs today: the apiserver, the scheduler and the kubelet. The controller-manager and
# proxy arrive with later issues, so the Deployment and ReplicationController of the example
# are stored and served but make no pods yet.
set -euo pipefail
cd "$(dirname "$0")/.."

DATA_DIR=${SKIFF_DATA_DIR:-/var/lib/skiff}
PORT=${SKIFF_PORT:-6443}

bash deploy/install-deps.sh
echo "== building Skiff (release)"
cargo build --release -p skiff-apiserver -p skiff-scheduler -p skiff-kubelet

# No registry is reachable: the example image is busybox on an empty base, built here.
if ! docker image inspect skiff-local/busybox:1 >/dev/null 2>&1; then
    echo "== building the example image skiff-local/busybox:1"
    ctx=$(mktemp -d)
    cp /bin/busybox "$ctx/busybox"
    printf 'FROM scratch\nCOPY busybox /bin/busybox\nRUN ["/bin/busybox", "--install", "-s", "/bin"]\n' >"$ctx/Dockerfile"
    docker build -q -t skiff-local/busybox:1 "$ctx" >/dev/null
    rm -rf "$ctx"
fi

mkdir -p "$DATA_DIR"
for prog in kubelet scheduler apiserver; do
    if [ -f "$DATA_DIR/$prog.pid" ] && kill -0 "$(cat "$DATA_DIR/$prog.pid")" 2>/dev/null; then
        echo "== stopping the $prog started earlier"
        kill "$(cat "$DATA_DIR/$prog.pid")"
        while kill -0 "$(cat "$DATA_DIR/$prog.pid")" 2>/dev/null; do sleep 0.2; done
    fi
done
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

echo "== starting skiff-scheduler (log in $DATA_DIR/scheduler.log)"
nohup target/release/skiff-scheduler --kubeconfig "$KUBECONFIG" --bind-address 127.0.0.1 \
    >"$DATA_DIR/scheduler.log" 2>&1 &
echo $! >"$DATA_DIR/scheduler.pid"

NODE=$(hostname | tr '[:upper:]' '[:lower:]')
echo "== starting skiff-kubelet as node $NODE (pod subnet ${SKIFF_POD_CIDR:-10.244.0.0/24}, log in $DATA_DIR/kubelet.log)"
nohup target/release/skiff-kubelet --kubeconfig "$KUBECONFIG" --hostname-override "$NODE" \
    --pod-cidr "${SKIFF_POD_CIDR:-10.244.0.0/24}" --root-dir "$DATA_DIR/kubelet" >"$DATA_DIR/kubelet.log" 2>&1 &
echo $! >"$DATA_DIR/kubelet.pid"
kubectl wait --for=condition=Ready "node/$NODE" --timeout=60s
kubectl get nodes -o wide

echo "== running a pod"
kubectl delete pod hello --ignore-not-found --wait=true >/dev/null
kubectl apply -f deploy/examples/hello-pod.yaml
kubectl wait --for=condition=Ready pod/hello --timeout=60s
kubectl get pods -o wide
kubectl get events --field-selector involvedObject.name=hello,reason=Scheduled
POD_IP=$(kubectl get pod hello -o jsonpath='{.status.podIP}')
echo "== the pod answers at $POD_IP:8080"
curl -s "http://$POD_IP:8080/index.html"
echo "== kubectl exec hello -- hostname"
kubectl exec hello -- hostname
echo "== kubectl apply -f deploy/examples/nginx.yaml"
kubectl apply -f deploy/examples/nginx.yaml
echo "== kubectl get rc,deploy,svc"
kubectl get rc,deploy,svc
echo
echo "Skiff's apiserver (pid $(cat "$DATA_DIR/apiserver.pid")), scheduler (pid $(cat "$DATA_DIR/scheduler.pid")) and kubelet (pid $(cat "$DATA_DIR/kubelet.pid")) are running. Use them with:"
echo "  export KUBECONFIG=$KUBECONFIG"
