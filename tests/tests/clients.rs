//! The ecosystem's other clients against a real `skiff-apiserver`, unchanged: kube-rs (with its
//! runtime watcher) and the official Python client.

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use futures::{Stream, StreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client, Config, ResourceExt};
use skiff_e2e::{ApiServer, Backend};

skiff_e2e::for_each_backend!(
    kube_rs_lists_and_watches,
    kube_rs_writes_like_a_controller,
    python_client_lists_creates_and_watches,
);

const WAIT: Duration = Duration::from_secs(20);

/// Runs `test` on a tokio runtime with a kube `Client` made from the server's admin kubeconfig.
fn with_kube_client<F: Future<Output = ()>>(server: &ApiServer, test: impl FnOnce(Client) -> F) {
    // DESIGN §9: rustls must use ring; say so before kube builds its TLS config. (Err only means
    // a provider is already installed.)
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(async {
        let kubeconfig =
            Kubeconfig::read_from(server.kubeconfig()).expect("read the admin kubeconfig");
        let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .expect("a kube Config from the admin kubeconfig");
        test(Client::try_from(config).expect("a kube Client")).await;
    });
}

fn kube_rs_lists_and_watches(backend: Backend) {
    let server = ApiServer::start(backend);
    with_kube_client(&server, |client| async move {
        let namespaces: Api<Namespace> = Api::all(client.clone());
        let names: BTreeSet<String> = namespaces
            .list(&ListParams::default())
            .await
            .expect("list namespaces")
            .items
            .iter()
            .map(|n| n.name_any())
            .collect();
        for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            assert!(names.contains(ns), "namespace {ns} missing from {names:?}");
        }

        let config_maps: Api<ConfigMap> = Api::namespaced(client, "default");
        let list = config_maps
            .list(&ListParams::default())
            .await
            .expect("list configmaps");
        assert!(
            list.metadata
                .resource_version
                .is_some_and(|rv| !rv.is_empty()),
            "a list carries a resourceVersion"
        );

        let mut events = watcher::watcher(config_maps.clone(), watcher::Config::default()).boxed();
        next_matching(&mut events, "the initial list to finish", |e| {
            matches!(e, Event::InitDone)
        })
        .await;

        for name in ["kube-a", "kube-b"] {
            let mut cm = ConfigMap::default();
            cm.metadata.name = Some(name.into());
            cm.data = Some([("made-by".to_string(), "kube-rs".to_string())].into());
            let created = config_maps
                .create(&PostParams::default(), &cm)
                .await
                .expect("create a configmap");
            assert!(created.metadata.uid.is_some(), "the server sets uid");
        }
        let mut applied = BTreeSet::new();
        while applied.len() < 2 {
            let event = next_matching(&mut events, "Apply events for kube-a and kube-b", |e| {
                matches!(e, Event::Apply(_))
            })
            .await;
            if let Event::Apply(cm) = event {
                applied.insert(cm.name_any());
            }
        }
        assert_eq!(
            applied,
            BTreeSet::from(["kube-a".to_string(), "kube-b".to_string()])
        );

        config_maps
            .delete("kube-a", &DeleteParams::default())
            .await
            .expect("delete kube-a");
        let event = next_matching(&mut events, "a Delete event for kube-a", |e| {
            matches!(e, Event::Delete(_))
        })
        .await;
        let Event::Delete(deleted) = event else {
            unreachable!()
        };
        assert_eq!(deleted.name_any(), "kube-a");
    });
}

/// What Skiff's own controllers do through kube-rs: server-side apply, the status and scale
/// subresources, merge and strategic patches, optimistic concurrency, paging and collection deletes.
fn kube_rs_writes_like_a_controller(backend: Backend) {
    let server = ApiServer::start(backend);
    with_kube_client(&server, |client| async move {
        let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
        let manifest = serde_json::json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web"},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "nginx", "image": "nginx:1.25"}]},
                },
            },
        });
        let applied = deployments
            .patch(
                "web",
                &PatchParams::apply("skiff-e2e"),
                &Patch::Apply(&manifest),
            )
            .await
            .expect("server-side apply creates");
        assert_eq!(applied.spec.as_ref().and_then(|s| s.replicas), Some(2));
        let managers = applied.metadata.managed_fields.clone().unwrap_or_default();
        assert!(
            managers
                .iter()
                .any(|m| m.manager.as_deref() == Some("skiff-e2e")
                    && m.operation.as_deref() == Some("Apply")),
            "{managers:#?}"
        );

        let merged = deployments
            .patch(
                "web",
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({"metadata": {"labels": {"team": "a"}}})),
            )
            .await
            .expect("merge patch");
        assert_eq!(merged.labels().get("team").map(String::as_str), Some("a"));
        // (JSON patch through kube-rs needs kube's `jsonpatch` feature; kubectl covers it.)
        deployments
            .patch("web", &PatchParams::default(), &Patch::Merge(serde_json::json!({"spec": {"template": {"spec": {"containers": [{"name": "nginx", "image": "nginx:1.27"}]}}}})))
            .await
            .expect("merge patch of the containers list");
        let strategic = deployments
            .patch(
                "web",
                &PatchParams::default(),
                &Patch::Strategic(serde_json::json!({"spec": {"template": {"spec": {"containers": [{"name": "sidecar", "image": "busybox:1.36"}]}}}})),
            )
            .await
            .expect("strategic merge patch");
        let images: Vec<String> = strategic
            .spec
            .unwrap()
            .template
            .spec
            .unwrap()
            .containers
            .into_iter()
            .filter_map(|c| c.image)
            .collect();
        assert_eq!(images.len(), 2, "{images:?}");
        assert!(
            images.contains(&"nginx:1.27".to_string())
                && images.contains(&"busybox:1.36".to_string()),
            "{images:?}"
        );

        // Status only through /status, and it does not bump the generation.
        let before = deployments.get("web").await.expect("get web");
        let with_status = deployments
            .patch_status(
                "web",
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({"status": {"replicas": 2, "readyReplicas": 1}})),
            )
            .await
            .expect("patch /status");
        assert_eq!(
            with_status.status.as_ref().and_then(|s| s.ready_replicas),
            Some(1)
        );
        assert_eq!(with_status.metadata.generation, before.metadata.generation);

        let scale = deployments.get_scale("web").await.expect("get /scale");
        assert_eq!(scale.spec.and_then(|s| s.replicas), Some(2));
        deployments
            .patch_scale(
                "web",
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({"spec": {"replicas": 4}})),
            )
            .await
            .expect("patch /scale");
        assert_eq!(
            deployments
                .get("web")
                .await
                .unwrap()
                .spec
                .and_then(|s| s.replicas),
            Some(4)
        );

        // Optimistic concurrency: a replace with a stale resourceVersion is a 409 Conflict.
        let mut stale = before;
        stale.metadata.managed_fields = None;
        match deployments
            .replace("web", &PostParams::default(), &stale)
            .await
        {
            Err(kube::Error::Api(status)) => assert!(status.is_conflict(), "{status:?}"),
            other => panic!("a stale replace must be a Conflict, got {other:?}"),
        }
        match deployments.get("nope").await {
            Err(kube::Error::Api(status)) => assert!(status.is_not_found(), "{status:?}"),
            other => panic!("expected NotFound, got {other:?}"),
        }

        // Paging and deleting a collection.
        let config_maps: Api<ConfigMap> = Api::namespaced(client, "default");
        for i in 0..3 {
            let mut cm = ConfigMap::default();
            cm.metadata.name = Some(format!("page-{i}"));
            cm.metadata.labels = Some([("e2e".to_string(), "page".to_string())].into());
            config_maps
                .create(&PostParams::default(), &cm)
                .await
                .expect("create");
        }
        let mut names = Vec::new();
        let mut params = ListParams::default().labels("e2e=page").limit(2);
        loop {
            let page = config_maps.list(&params).await.expect("list a page");
            assert!(
                page.items.len() <= 2,
                "limit=2 returned {} items",
                page.items.len()
            );
            names.extend(page.items.iter().map(|c| c.name_any()));
            match page.metadata.continue_.filter(|c| !c.is_empty()) {
                Some(token) => params = params.continue_token(&token),
                None => break,
            }
        }
        assert_eq!(names, ["page-0", "page-1", "page-2"]);
        config_maps
            .delete_collection(
                &DeleteParams::default(),
                &ListParams::default().labels("e2e=page"),
            )
            .await
            .expect("delete the collection");
        let left = config_maps
            .list(&ListParams::default().labels("e2e=page"))
            .await
            .expect("list");
        assert!(
            left.items.is_empty(),
            "{:?}",
            left.items.iter().map(|c| c.name_any()).collect::<Vec<_>>()
        );
    });
}

/// The next watcher event for which `wanted` holds, within [`WAIT`]; watcher errors fail the test.
async fn next_matching<S>(
    events: &mut S,
    what: &str,
    wanted: impl Fn(&Event<ConfigMap>) -> bool,
) -> Event<ConfigMap>
where
    S: Stream<Item = Result<Event<ConfigMap>, watcher::Error>> + Unpin,
{
    let found = tokio::time::timeout(WAIT, async {
        loop {
            match events.next().await {
                Some(Ok(event)) if wanted(&event) => return event,
                Some(Ok(_)) => {}
                Some(Err(e)) => panic!("the watcher failed while waiting for {what}: {e:?}"),
                None => panic!("the watcher ended while waiting for {what}"),
            }
        }
    })
    .await;
    found.unwrap_or_else(|_| panic!("no {what} within {WAIT:?}"))
}

fn python_client_lists_creates_and_watches(backend: Backend) {
    let server = ApiServer::start(backend);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/python/test_client.py");
    // `timeout` bounds a hung client; the script's own watches time out after 20 s.
    let out = Command::new("timeout")
        .args(["120", "python3", script])
        .arg(server.kubeconfig())
        .current_dir(server.dir())
        .output()
        .expect("run python3 (the official client: pip install kubernetes)");
    assert!(
        out.status.success(),
        "{script} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
