#!/usr/bin/env bash
# Sets up a fresh Debian/Ubuntu machine (as root) and runs Skiff's main job: builds it, starts
# the apiserver with its embedded store (zero setup, HTTPS, admin kubeconfig), the scheduler,
# the controller-manager and a kubelet on this machine's Docker, runs a pod (the scheduler
# places it) and shows it Running and answering, then applies the example manifests (a
# ReplicationController, a Deployment and a Service) with the real kubectl and shows their
# pods running and the Service's endpoints.
#
# Not yet: skiff-proxy (Service IPs answer once it exists; the endpoints are shown instead).
set -euo pipefail
cd "$(dirname "$0")/.."

DATA_DIR=${SKIFF_DATA_DIR:-/var/lib/skiff}
PORT=${SKIFF_PORT:-6443}

bash deploy/install-deps.sh
echo "== building Skiff (release)"
cargo build --release -p skiff-apiserver -p skiff-scheduler -p skiff-controller-manager -p skiff-kubelet

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
for prog in kubelet controller-manager scheduler apiserver; do
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
echo "== starting skiff-controller-manager (log in $DATA_DIR/controller-manager.log)"
nohup target/release/skiff-controller-manager --kubeconfig "$KUBECONFIG" --bind-address 127.0.0.1 \
    >"$DATA_DIR/controller-manager.log" 2>&1 &
echo $! >"$DATA_DIR/controller-manager.pid"

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
# A rerun starts the example afresh (its old pods are garbage-collected with their owners).
kubectl delete -f deploy/examples/nginx.yaml --ignore-not-found --wait=true >/dev/null
echo "== kubectl apply -f deploy/examples/nginx.yaml"
kubectl apply -f deploy/examples/nginx.yaml
kubectl rollout status deployment/web --timeout=120s
kubectl wait --for=condition=Ready pod -l app=nginx --timeout=120s
echo "== kubectl get rc,deploy,rs,svc,endpoints"
kubectl get rc,deploy,rs,svc,endpoints
kubectl get pods -o wide
WEB_IP=$(kubectl get pods -l app=web -o jsonpath='{.items[0].status.podIP}')
echo "== a pod of the web Deployment answers at $WEB_IP:8080"
curl -s "http://$WEB_IP:8080/index.html"
echo
echo "Skiff's apiserver (pid $(cat "$DATA_DIR/apiserver.pid")), scheduler (pid $(cat "$DATA_DIR/scheduler.pid")), controller-manager (pid $(cat "$DATA_DIR/controller-manager.pid")) and kubelet (pid $(cat "$DATA_DIR/kubelet.pid")) are running. Use them with:"
echo "  export KUBECONFIG=$KUBECONFIG"
