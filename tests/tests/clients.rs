//! The ecosystem's other clients against a real `skiff-apiserver`, unchanged: kube-rs (with its
//! runtime watcher) and the official Python client.

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client, Config, ResourceExt};
use skiff_e2e::{ApiServer, Backend};

skiff_e2e::for_each_backend!(
    kube_rs_lists_and_watches,
    python_client_lists_creates_and_watches
);

const WAIT: Duration = Duration::from_secs(20);

fn kube_rs_lists_and_watches(backend: Backend) {
    // DESIGN §9: rustls must use ring; say so before kube builds its TLS config. (Err only means
    // a provider is already installed.)
    let _ = rustls::crypto::ring::default_provider().install_default();
    let server = ApiServer::start(backend);
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
        let client = Client::try_from(config).expect("a kube Client");

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
