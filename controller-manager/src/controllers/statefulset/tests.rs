//! Unit tests of the StatefulSet rules: names, ordering, scale-down, rolling updates, claims
//! and status.

use super::*;
use crate::pods::testing::pod;

const NOW: &str = "2026-01-01T01:00:00Z";

fn now() -> jiff::Timestamp {
    NOW.parse().unwrap()
}

fn facts(replicas: i32, ordered: bool, strategy: Strategy) -> Facts<'static> {
    Facts {
        start: 0,
        replicas,
        ordered,
        strategy,
        update_revision: "web-new",
        min_ready_seconds: 0,
        now: now(),
    }
}

const ROLLING: Strategy = Strategy::RollingUpdate {
    partition: 0,
    max_unavailable: 1,
};

fn healthy_pod(ord: i32, rev: &str) -> (i32, Arc<CachedPod>) {
    (
        ord,
        Arc::new(
            pod(&format!("web-{ord}"))
                .ready("2026-01-01T00:00:00Z")
                .label(HASH_LABEL, rev)
                .build(),
        ),
    )
}

#[test]
fn ordinals_parse_only_the_sets_own_names() {
    assert_eq!(ordinal_of("web", "web-0"), Some(0));
    assert_eq!(ordinal_of("web", "web-12"), Some(12));
    assert_eq!(ordinal_of("web", "web-01"), None);
    assert_eq!(ordinal_of("web", "web-x"), None);
    assert_eq!(ordinal_of("web", "webb-1"), None);
    assert_eq!(ordinal_of("web", "web-"), None);
    assert_eq!(ordinal_of("web-a", "web-a-3"), Some(3));
    assert_eq!(claim_name("www", "web", 2), "www-web-2");
}

#[test]
fn ordered_ready_creates_one_pod_at_a_time_and_waits_for_it() {
    let f = facts(3, true, ROLLING);
    let mut pods = BTreeMap::new();
    assert_eq!(plan(&f, &pods).create, [0]);
    pods.insert(
        0,
        Arc::new(pod("web-0").label(HASH_LABEL, "web-new").build()),
    );
    assert_eq!(plan(&f, &pods), Plan::default(), "web-0 is not ready yet");
    let (o, p) = healthy_pod(0, "web-new");
    pods.insert(o, p);
    assert_eq!(plan(&f, &pods).create, [1]);
    // Parallel makes them all at once.
    assert_eq!(
        plan(&facts(3, false, ROLLING), &BTreeMap::new()).create,
        [0, 1, 2]
    );
}

#[test]
fn min_ready_seconds_hold_the_next_pod_back() {
    let mut f = facts(2, true, ROLLING);
    f.min_ready_seconds = 3600 * 2;
    let pods: BTreeMap<_, _> = [healthy_pod(0, "web-new")].into();
    assert_eq!(plan(&f, &pods), Plan::default());
    f.min_ready_seconds = 60;
    assert_eq!(plan(&f, &pods).create, [1]);
}

#[test]
fn failed_pods_are_deleted_to_be_recreated_under_their_name() {
    let f = facts(2, true, ROLLING);
    let mut pods: BTreeMap<_, _> = [healthy_pod(0, "web-new")].into();
    pods.insert(1, Arc::new(pod("web-1").failed().build()));
    assert_eq!(plan(&f, &pods).delete, ["web-1"]);
    pods.insert(1, Arc::new(pod("web-1").deleting().build()));
    assert_eq!(plan(&f, &pods), Plan::default(), "waits for it to go");
    pods.remove(&1);
    assert_eq!(plan(&f, &pods).create, [1]);
}

#[test]
fn scale_down_removes_the_highest_ordinal_first() {
    let pods: BTreeMap<_, _> = (0..3).map(|o| healthy_pod(o, "web-new")).collect();
    assert_eq!(plan(&facts(1, true, ROLLING), &pods).delete, ["web-2"]);
    assert_eq!(
        plan(&facts(1, false, ROLLING), &pods).delete,
        ["web-2", "web-1"]
    );
    let mut going = pods.clone();
    going.insert(2, Arc::new(pod("web-2").deleting().build()));
    assert_eq!(plan(&facts(1, true, ROLLING), &going), Plan::default());
}

#[test]
fn rolling_updates_go_in_reverse_ordinal_order_down_to_the_partition() {
    let pods: BTreeMap<_, _> = (0..3).map(|o| healthy_pod(o, "web-old")).collect();
    assert_eq!(plan(&facts(3, true, ROLLING), &pods).delete, ["web-2"]);
    let mut half = pods.clone();
    let (o, p) = healthy_pod(2, "web-new");
    half.insert(o, p);
    assert_eq!(plan(&facts(3, true, ROLLING), &half).delete, ["web-1"]);
    let partitioned = Strategy::RollingUpdate {
        partition: 2,
        max_unavailable: 1,
    };
    assert_eq!(plan(&facts(3, true, partitioned), &half), Plan::default());
    let two = Strategy::RollingUpdate {
        partition: 0,
        max_unavailable: 2,
    };
    assert_eq!(
        plan(&facts(3, false, two), &pods).delete,
        ["web-2", "web-1"]
    );
    assert_eq!(
        plan(&facts(3, true, Strategy::OnDelete), &pods),
        Plan::default()
    );
}

#[test]
fn status_counts_revisions_and_completes_the_update() {
    let mut pods: BTreeMap<_, _> = (0..3).map(|o| healthy_pod(o, "web-old")).collect();
    let (o, p) = healthy_pod(2, "web-new");
    pods.insert(o, p);
    let s = compute_status(&pods, "web-old", "web-new", 0, now());
    assert_eq!(s["replicas"], 3);
    assert_eq!(s["readyReplicas"], 3);
    assert_eq!(s["currentReplicas"], 2);
    assert_eq!(s["updatedReplicas"], 1);
    assert_eq!(s["currentRevision"], "web-old");
    let done: BTreeMap<_, _> = (0..3).map(|o| healthy_pod(o, "web-new")).collect();
    let s = compute_status(&done, "web-old", "web-new", 0, now());
    assert_eq!(s["currentReplicas"], 3);
    assert_eq!(s["currentRevision"], "web-new");
}

fn set(retention: Value) -> StatefulSet {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": "web", "namespace": "default", "uid": "set-uid"},
        "spec": {
            "serviceName": "web",
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                         "spec": {"containers": [{"name": "c", "image": "busybox"}],
                                  "volumes": [{"name": "www", "emptyDir": {}}]}},
            "volumeClaimTemplates": [{"metadata": {"name": "www"},
                                      "spec": {"accessModes": ["ReadWriteOnce"]}}],
            "persistentVolumeClaimRetentionPolicy": retention,
        }
    }))
    .unwrap()
}

#[test]
fn pods_get_their_identity_and_their_claims() {
    let s = set(json!({"whenDeleted": "Retain", "whenScaled": "Retain"}));
    let p = new_pod(&s, &s.spec.as_ref().unwrap().template, 1, "web-abc");
    assert_eq!(p.metadata.name.as_deref(), Some("web-1"));
    assert_eq!(p.metadata.generate_name, None);
    let labels = p.metadata.labels.as_ref().unwrap();
    assert_eq!(labels[POD_NAME_LABEL], "web-1");
    assert_eq!(labels[POD_INDEX_LABEL], "1");
    assert_eq!(labels[HASH_LABEL], "web-abc");
    let spec = p.spec.as_ref().unwrap();
    assert_eq!(spec.hostname.as_deref(), Some("web-1"));
    assert_eq!(spec.subdomain.as_deref(), Some("web"));
    let vols = spec.volumes.as_ref().unwrap();
    assert_eq!(
        vols.len(),
        1,
        "the template's volume of that name is replaced"
    );
    assert_eq!(
        vols[0].persistent_volume_claim.as_ref().unwrap().claim_name,
        "www-web-1"
    );
    let c = new_claim(&s, &claim_templates(&s)[0], 1);
    assert_eq!(c.metadata.name.as_deref(), Some("www-web-1"));
    assert_eq!(c.metadata.labels.as_ref().unwrap()["app"], "web");
    assert_eq!(
        c.metadata.owner_references, None,
        "retained claims have no owner"
    );
}

#[test]
fn retention_policies_become_owner_references() {
    let set_ref = OwnerReference {
        kind: "StatefulSet".into(),
        uid: "set-uid".into(),
        ..Default::default()
    };
    let pod_ref = OwnerReference {
        kind: "Pod".into(),
        uid: "pod-uid".into(),
        ..Default::default()
    };
    let other = OwnerReference {
        uid: "other".into(),
        ..Default::default()
    };
    let uids = |v: Vec<OwnerReference>| v.into_iter().map(|r| r.uid).collect::<Vec<_>>();
    let retain = Retention::default();
    let both = Retention {
        delete_with_set: true,
        delete_when_scaled: true,
    };
    let have = [other.clone(), set_ref.clone(), pod_ref.clone()];
    assert_eq!(
        uids(claim_owners(&have, retain, &set_ref, Some(&pod_ref), true)),
        ["other"]
    );
    assert_eq!(
        uids(claim_owners(&[], both, &set_ref, Some(&pod_ref), false)),
        ["set-uid"]
    );
    assert_eq!(
        uids(claim_owners(&[], both, &set_ref, Some(&pod_ref), true)),
        ["pod-uid"],
        "a condemned pod's claim follows the pod, not the set"
    );
    let scaled_only = Retention {
        delete_with_set: false,
        delete_when_scaled: true,
    };
    assert_eq!(
        uids(claim_owners(
            &have,
            scaled_only,
            &set_ref,
            Some(&pod_ref),
            false
        )),
        ["other"]
    );
    let s = set(json!({"whenDeleted": "Delete", "whenScaled": "Retain"}));
    let c = new_claim(&s, &claim_templates(&s)[0], 0);
    assert_eq!(
        uids(c.metadata.owner_references.unwrap()),
        ["set-uid"],
        "whenDeleted: Delete claims belong to the set"
    );
}
