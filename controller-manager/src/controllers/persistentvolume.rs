//! The PersistentVolume binder (`persistentvolume-binder`), as kube-controller-manager's:
//! - binds a Pending claim to the smallest Available volume that fits it (class, access modes,
//!   volume mode, selector, capacity; a volume or claim pre-bound by the user is honoured),
//!   writing `claimRef`/`volumeName`, the `pv.kubernetes.io/*` annotations and both phases;
//! - for a class with `volumeBindingMode: WaitForFirstConsumer`, waits until the scheduler
//!   names the first pod's node on the claim (`volume.kubernetes.io/selected-node`), then
//!   binds a volume that node can reach or provisions one;
//! - provisions volumes for the built-in `skiff.io/local-path` provisioner: a `hostPath`
//!   directory on the selected node with node affinity to it; the node's kubelet creates the
//!   directory when a pod mounts it and removes it once the volume is deleted;
//! - follows claims that go away: the volume becomes Released; reclaim policy `Retain` keeps
//!   it, `Delete` deletes a volume this provisioner made (others go Failed, as upstream's with
//!   no deleter plugin); a bound claim whose volume vanished is Lost;
//! - expands: a bound claim whose request grew, on a class with `allowVolumeExpansion`, gets
//!   its volume's capacity and its own `status.capacity` raised (bookkeeping: a `local-path`
//!   directory has no quota to grow). Upstream runs this as `persistentvolume-expander`;
//!   here the binder does it, holding the writes it needs.
//!
//! It also creates the default StorageClass `local-path` when absent, as k3s ships one.
//! Work queue keys are `pvc/<namespace>/<name>` and `pv/<name>`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    HostPathVolumeSource, Node, NodeSelectorRequirement, NodeSelectorTerm, ObjectReference,
    PersistentVolume, PersistentVolumeClaim, PersistentVolumeSpec, PersistentVolumeStatus,
    VolumeNodeAffinity,
};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, PostParams};
use kube::{Resource, ResourceExt};
use skiff_api::storage::{
    ANN_BETA_STORAGE_PROVISIONER, ANN_BIND_COMPLETED, ANN_BOUND_BY_CONTROLLER, ANN_LOCAL_PATH_DIR,
    ANN_PROVISIONED_BY, ANN_SELECTED_NODE, ANN_STORAGE_PROVISIONER, DEFAULT_LOCAL_PATH_DIR,
    LOCAL_PATH_CLASS, LOCAL_PATH_PROVISIONER, bytes, capacity, claim_class, claim_phase, claim_ref,
    find_volume, phase, requested,
};
use skiff_client::events::{EventType, Recorder};
use skiff_client::informer::{Change, Informer};

use crate::context::Context;
use crate::controller::{Controller, Reconciler, Result};
use crate::workqueue::WorkQueue;

/// The key that (re)creates the default StorageClass.
const DEFAULT_CLASS_KEY: &str = "storageclass/local-path";
/// How often an unbound claim is looked at again without any change (upstream's binder
/// resyncs every 15 s).
const RESYNC: Duration = Duration::from_secs(15);

/// The claim's `pvc/ns/name` key.
pub fn claim_key(ns: &str, name: &str) -> String {
    format!("pvc/{ns}/{name}")
}

fn volume_key(name: &str) -> String {
    format!("pv/{name}")
}

fn annotation<'a>(meta: &'a ObjectMeta, key: &str) -> Option<&'a str> {
    meta.annotations.as_ref()?.get(key).map(String::as_str)
}

fn set_annotation(meta: &mut ObjectMeta, key: &str, value: &str) {
    meta.annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(key.into(), value.into());
}

/// The default StorageClass k3s ships, here with Skiff's provisioner.
pub fn default_class() -> StorageClass {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {
            "name": LOCAL_PATH_CLASS,
            "annotations": { "storageclass.kubernetes.io/is-default-class": "true" },
        },
        "provisioner": LOCAL_PATH_PROVISIONER,
        "reclaimPolicy": "Delete",
        "volumeBindingMode": "WaitForFirstConsumer",
        "allowVolumeExpansion": true,
    }))
    .expect("a valid StorageClass")
}

/// The `local-path` volume for `claim` on `node` (its storage directory `dir`).
pub fn local_path_volume(
    claim: &PersistentVolumeClaim,
    class: &StorageClass,
    node: &str,
    dir: &str,
) -> PersistentVolume {
    let ns = claim.metadata.namespace.clone().unwrap_or_default();
    let name = claim.metadata.name.clone().unwrap_or_default();
    let uid = claim.metadata.uid.clone().unwrap_or_default();
    let pv_name = skiff_api::storage::provisioned_volume_name(&uid);
    let path = format!(
        "{}/{}",
        dir.trim_end_matches('/'),
        skiff_api::storage::local_path_dir_name(&pv_name, &ns, &name)
    );
    let spec = claim.spec.clone().unwrap_or_default();
    let mut capacity = BTreeMap::new();
    if let Some(q) = requested(claim) {
        capacity.insert("storage".to_string(), q.clone());
    }
    let mut annotations = BTreeMap::new();
    annotations.insert(
        ANN_PROVISIONED_BY.to_string(),
        LOCAL_PATH_PROVISIONER.to_string(),
    );
    PersistentVolume {
        metadata: ObjectMeta {
            name: Some(pv_name),
            annotations: Some(annotations),
            ..Default::default()
        },
        spec: Some(PersistentVolumeSpec {
            access_modes: spec.access_modes.clone(),
            capacity: Some(capacity),
            claim_ref: Some(ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("PersistentVolumeClaim".into()),
                namespace: Some(ns),
                name: Some(name),
                uid: Some(uid),
                resource_version: claim.metadata.resource_version.clone(),
                ..Default::default()
            }),
            host_path: Some(HostPathVolumeSource {
                path,
                type_: Some("DirectoryOrCreate".into()),
            }),
            node_affinity: Some(VolumeNodeAffinity {
                required: Some(k8s_openapi::api::core::v1::NodeSelector {
                    node_selector_terms: vec![NodeSelectorTerm {
                        match_expressions: Some(vec![NodeSelectorRequirement {
                            key: "kubernetes.io/hostname".into(),
                            operator: "In".into(),
                            values: Some(vec![node.to_string()]),
                        }]),
                        match_fields: None,
                    }],
                }),
            }),
            persistent_volume_reclaim_policy: Some(
                class
                    .reclaim_policy
                    .clone()
                    .unwrap_or_else(|| "Delete".into()),
            ),
            storage_class_name: class.metadata.name.clone(),
            volume_mode: spec.volume_mode.clone(),
            mount_options: class.mount_options.clone(),
            ..Default::default()
        }),
        status: None,
    }
}

pub struct PersistentVolumeBinder {
    client: kube::Client,
    claims: Arc<Informer<PersistentVolumeClaim>>,
    volumes: Arc<Informer<PersistentVolume>>,
    classes: Arc<Informer<StorageClass>>,
    nodes: Arc<Informer<Node>>,
    recorder: Recorder,
}

impl Controller for PersistentVolumeBinder {
    const SERVICE_ACCOUNT: &'static str = "persistent-volume-binder";

    fn build(ctx: &Arc<Context>, queue: Arc<WorkQueue>) -> Arc<Self> {
        let claims = ctx.persistent_volume_claims();
        let volumes = ctx.persistent_volumes();
        let classes = ctx.storage_classes();
        let (q, all) = (queue.clone(), claims.clone());
        claims.on_change(move |c| match c {
            Change::Applied { new, .. } => q.add(claim_key(
                new.metadata.namespace.as_deref().unwrap_or_default(),
                &new.name_any(),
            )),
            // The volume bound to it is Released.
            Change::Deleted(old) => {
                if let Some(v) = old.spec.as_ref().and_then(|s| s.volume_name.as_deref()) {
                    q.add(volume_key(v));
                }
            }
            Change::Resynced => all.list().iter().for_each(|c| {
                q.add(claim_key(
                    c.metadata.namespace.as_deref().unwrap_or_default(),
                    &c.name_any(),
                ))
            }),
        });
        let (q, all) = (queue.clone(), volumes.clone());
        volumes.on_change(move |c| match c {
            Change::Applied { new, .. } => {
                q.add(volume_key(&new.name_any()));
                if let Some((ns, name, _)) = claim_ref(new) {
                    q.add(claim_key(ns, name));
                }
            }
            // A claim bound to it is Lost.
            Change::Deleted(old) => {
                if let Some((ns, name, _)) = claim_ref(old) {
                    q.add(claim_key(ns, name));
                }
            }
            Change::Resynced => all
                .list()
                .iter()
                .for_each(|v| q.add(volume_key(&v.name_any()))),
        });
        // A new class may let waiting claims provision.
        let (q, all) = (queue.clone(), claims.clone());
        classes.on_change(move |c| {
            if let Change::Applied { .. } = c {
                all.list()
                    .iter()
                    .filter(|c| claim_phase(c) != "Bound")
                    .for_each(|c| {
                        q.add(claim_key(
                            c.metadata.namespace.as_deref().unwrap_or_default(),
                            &c.name_any(),
                        ))
                    });
            }
        });
        queue.add(DEFAULT_CLASS_KEY.to_string());
        let client = ctx.client_for(Self::SERVICE_ACCOUNT);
        Arc::new(PersistentVolumeBinder {
            recorder: Recorder::new(
                client.clone(),
                "persistentvolume-controller",
                &ctx.identity,
                ctx.shutdown.clone(),
            ),
            client,
            claims,
            volumes,
            classes,
            nodes: ctx.nodes.clone(),
        })
    }
}

impl Reconciler for PersistentVolumeBinder {
    const NAME: &'static str = "persistentvolume-binder";

    async fn reconcile(&self, key: &str) -> Result<Option<Duration>> {
        if key == DEFAULT_CLASS_KEY {
            return self.ensure_default_class().await;
        }
        if let Some(name) = key.strip_prefix("pv/") {
            return self.sync_volume(name).await;
        }
        let Some((ns, name)) = key.strip_prefix("pvc/").and_then(|k| k.split_once('/')) else {
            return Ok(None);
        };
        self.sync_claim(ns, name).await
    }
}

impl PersistentVolumeBinder {
    fn claim_event(
        &self,
        claim: &PersistentVolumeClaim,
        type_: EventType,
        reason: &str,
        message: String,
    ) {
        self.recorder
            .publish(claim.object_ref(&()), type_, reason, message);
    }

    fn volume_event(&self, pv: &PersistentVolume, type_: EventType, reason: &str, message: String) {
        self.recorder
            .publish(pv.object_ref(&()), type_, reason, message);
    }

    async fn ensure_default_class(&self) -> Result<Option<Duration>> {
        let api: Api<StorageClass> = Api::all(self.client.clone());
        if api.get_opt(LOCAL_PATH_CLASS).await?.is_some() {
            return Ok(None);
        }
        match api.create(&PostParams::default(), &default_class()).await {
            Ok(_) => {
                tracing::info!(class = LOCAL_PATH_CLASS, "created the default StorageClass");
                Ok(None)
            }
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    fn claims_api(&self, ns: &str) -> Api<PersistentVolumeClaim> {
        Api::namespaced(self.client.clone(), ns)
    }

    fn volumes_api(&self) -> Api<PersistentVolume> {
        Api::all(self.client.clone())
    }

    /// Writes a claim's status (phase, and capacity/access modes from its volume when bound).
    async fn claim_status(
        &self,
        claim: &PersistentVolumeClaim,
        phase: &str,
        pv: Option<&PersistentVolume>,
    ) -> Result<()> {
        let mut status = claim.status.clone().unwrap_or_default();
        let before = status.clone();
        status.phase = Some(phase.into());
        match pv {
            Some(pv) => {
                let vs = pv.spec.clone().unwrap_or_default();
                status.access_modes = vs.access_modes;
                status.capacity = vs.capacity;
            }
            None if phase == "Pending" => {
                status.access_modes = None;
                status.capacity = None;
            }
            None => {}
        }
        if status == before {
            return Ok(());
        }
        let mut body = claim.clone();
        body.status = Some(status);
        let ns = claim.metadata.namespace.as_deref().unwrap_or_default();
        self.claims_api(ns)
            .replace_status(&claim.name_any(), &PostParams::default(), &body)
            .await?;
        Ok(())
    }

    /// Writes a volume's phase (with a message for Failed).
    async fn volume_phase(
        &self,
        pv: &PersistentVolume,
        phase: &str,
        message: Option<String>,
    ) -> Result<()> {
        if self::phase(pv) == phase && pv.status.as_ref().and_then(|s| s.message.clone()) == message
        {
            return Ok(());
        }
        let mut body = pv.clone();
        let status = body
            .status
            .get_or_insert_with(PersistentVolumeStatus::default);
        status.phase = Some(phase.into());
        status.message = message;
        status.reason = None;
        self.volumes_api()
            .replace_status(&pv.name_any(), &PostParams::default(), &body)
            .await?;
        Ok(())
    }

    async fn sync_claim(&self, ns: &str, name: &str) -> Result<Option<Duration>> {
        let Some(claim) = self.claims.get(Some(ns), name) else {
            return Ok(None);
        };
        let bound_to = claim
            .spec
            .as_ref()
            .and_then(|s| s.volume_name.clone())
            .filter(|v| !v.is_empty());
        match bound_to {
            None => self.sync_unbound_claim(&claim).await,
            Some(v) => self.sync_bound_claim(&claim, &v).await,
        }
    }

    async fn sync_unbound_claim(&self, claim: &PersistentVolumeClaim) -> Result<Option<Duration>> {
        if claim.metadata.deletion_timestamp.is_some() {
            return Ok(None);
        }
        let class_name = claim_class(claim);
        let class = (!class_name.is_empty())
            .then(|| self.classes.get(None, class_name))
            .flatten();
        let delayed = class
            .as_ref()
            .is_some_and(|c| c.volume_binding_mode.as_deref() == Some("WaitForFirstConsumer"));
        let selected = annotation(&claim.metadata, ANN_SELECTED_NODE).map(str::to_string);
        if delayed && selected.is_none() {
            // Upstream records this (Normal) each sync until a pod uses the claim.
            self.claim_event(
                claim,
                EventType::Normal,
                "WaitForFirstConsumer",
                "waiting for first consumer to be created before binding".into(),
            );
            self.claim_status(claim, "Pending", None).await?;
            return Ok(Some(RESYNC));
        }
        let node = selected.as_deref().map(|n| {
            let labels = self
                .nodes
                .get(None, n)
                .and_then(|node| node.metadata.labels.clone())
                .unwrap_or_default();
            (n.to_string(), labels)
        });
        let volumes = self.volumes.list();
        let found = find_volume(claim, &volumes, node.as_ref().map(|(n, l)| (n.as_str(), l)));
        if let Some(pv) = found {
            self.bind(claim, &pv).await?;
            return Ok(None);
        }
        match class {
            Some(class) if class.provisioner == LOCAL_PATH_PROVISIONER => {
                self.provision(claim, &class, node.as_ref().map(|(n, _)| n.as_str()))
                    .await
            }
            Some(class) => {
                self.expect_provisioner(claim, &class.provisioner).await?;
                self.claim_event(
                    claim,
                    EventType::Normal,
                    "ExternalProvisioning",
                    format!(
                        "Waiting for a volume to be created either by the external provisioner '{}' or manually by the system administrator. If volume creation is delayed, please verify that the provisioner is running and correctly registered.",
                        class.provisioner
                    ),
                );
                self.claim_status(claim, "Pending", None).await?;
                Ok(Some(RESYNC))
            }
            None => {
                let message = if class_name.is_empty() {
                    "no persistent volumes available for this claim and no storage class is set"
                        .to_string()
                } else {
                    format!("storageclass.storage.k8s.io {class_name:?} not found")
                };
                let type_ = if class_name.is_empty() {
                    EventType::Normal
                } else {
                    EventType::Warning
                };
                self.claim_event(claim, type_, "FailedBinding", message);
                self.claim_status(claim, "Pending", None).await?;
                Ok(Some(RESYNC))
            }
        }
    }

    /// Marks the claim with the provisioner expected to make its volume.
    async fn expect_provisioner(
        &self,
        claim: &PersistentVolumeClaim,
        provisioner: &str,
    ) -> Result<PersistentVolumeClaim> {
        if annotation(&claim.metadata, ANN_STORAGE_PROVISIONER) == Some(provisioner) {
            return Ok(claim.clone());
        }
        let mut body = claim.clone();
        set_annotation(&mut body.metadata, ANN_STORAGE_PROVISIONER, provisioner);
        set_annotation(
            &mut body.metadata,
            ANN_BETA_STORAGE_PROVISIONER,
            provisioner,
        );
        let ns = claim.metadata.namespace.as_deref().unwrap_or_default();
        Ok(self
            .claims_api(ns)
            .replace(&claim.name_any(), &PostParams::default(), &body)
            .await?)
    }

    /// Makes a `local-path` volume for the claim on its selected node.
    async fn provision(
        &self,
        claim: &PersistentVolumeClaim,
        class: &StorageClass,
        node: Option<&str>,
    ) -> Result<Option<Duration>> {
        let Some(node) = node else {
            // The directory must be on some node, and only a pod's scheduling says which.
            self.claim_event(
                claim,
                EventType::Warning,
                "ProvisioningFailed",
                format!(
                    "failed to provision volume with StorageClass {:?}: configuration error, no node was specified",
                    class.name_any()
                ),
            );
            self.claim_status(claim, "Pending", None).await?;
            return Ok(Some(RESYNC));
        };
        let claim = self
            .expect_provisioner(claim, LOCAL_PATH_PROVISIONER)
            .await?;
        let ns = claim.metadata.namespace.clone().unwrap_or_default();
        self.claim_event(
            &claim,
            EventType::Normal,
            "Provisioning",
            format!(
                "External provisioner is provisioning volume for claim \"{ns}/{}\"",
                claim.name_any()
            ),
        );
        let dir = self
            .nodes
            .get(None, node)
            .and_then(|n| annotation(&n.metadata, ANN_LOCAL_PATH_DIR).map(str::to_string))
            .unwrap_or_else(|| DEFAULT_LOCAL_PATH_DIR.to_string());
        let pv = local_path_volume(&claim, class, node, &dir);
        let created = match self.volumes_api().create(&PostParams::default(), &pv).await {
            Ok(created) => created,
            // Made by an earlier attempt whose binding did not finish.
            Err(kube::Error::Api(s)) if s.code == 409 => {
                self.volumes_api().get(&pv.name_any()).await?
            }
            Err(e) => {
                self.claim_event(
                    &claim,
                    EventType::Warning,
                    "ProvisioningFailed",
                    format!(
                        "failed to provision volume with StorageClass {:?}: {e}",
                        class.name_any()
                    ),
                );
                return Err(e.into());
            }
        };
        self.claim_event(
            &claim,
            EventType::Normal,
            "ProvisioningSucceeded",
            format!("Successfully provisioned volume {}", created.name_any()),
        );
        self.bind(&claim, &created).await?;
        Ok(None)
    }

    /// Binds volume and claim: the volume's claimRef and phase, then the claim's volumeName,
    /// annotations and phase (the order upstream writes them, so a crash in between leaves a
    /// volume pre-bound to the claim, which the next sync completes).
    async fn bind(&self, claim: &PersistentVolumeClaim, pv: &PersistentVolume) -> Result<()> {
        let ns = claim.metadata.namespace.clone().unwrap_or_default();
        let uid = claim.metadata.uid.clone().unwrap_or_default();
        let mut pv = pv.clone();
        let ours = claim_ref(&pv).is_some_and(|(_, _, u)| u == uid);
        if !ours {
            let mut body = pv.clone();
            let spec = body.spec.get_or_insert_with(Default::default);
            spec.claim_ref = Some(ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("PersistentVolumeClaim".into()),
                namespace: Some(ns.clone()),
                name: claim.metadata.name.clone(),
                uid: Some(uid.clone()),
                resource_version: claim.metadata.resource_version.clone(),
                ..Default::default()
            });
            // A claimRef without a uid was the user's pre-binding; one the binder chose is
            // marked as its own, so that it may undo it.
            if claim_ref(&pv).is_none() {
                set_annotation(&mut body.metadata, ANN_BOUND_BY_CONTROLLER, "yes");
            }
            pv = self
                .volumes_api()
                .replace(&pv.name_any(), &PostParams::default(), &body)
                .await?;
        }
        self.volume_phase(&pv, "Bound", None).await?;

        let mut claim = claim.clone();
        let volume_name = claim.spec.as_ref().and_then(|s| s.volume_name.clone());
        if volume_name.as_deref() != Some(&pv.name_any())
            || annotation(&claim.metadata, ANN_BIND_COMPLETED) != Some("yes")
        {
            let mut body = claim.clone();
            if volume_name.is_none() {
                set_annotation(&mut body.metadata, ANN_BOUND_BY_CONTROLLER, "yes");
            }
            set_annotation(&mut body.metadata, ANN_BIND_COMPLETED, "yes");
            body.spec.get_or_insert_with(Default::default).volume_name = Some(pv.name_any());
            claim = self
                .claims_api(&ns)
                .replace(&claim.name_any(), &PostParams::default(), &body)
                .await?;
        }
        self.claim_status(&claim, "Bound", Some(&pv)).await?;
        tracing::info!(claim = %format!("{ns}/{}", claim.name_any()), volume = %pv.name_any(), "bound");
        Ok(())
    }

    async fn sync_bound_claim(
        &self,
        claim: &PersistentVolumeClaim,
        volume: &str,
    ) -> Result<Option<Duration>> {
        let Some(pv) = self.volumes.get(None, volume) else {
            if claim_phase(claim) == "Bound" {
                // Upstream checks the apiserver before declaring the loss; so does this.
                if self.volumes_api().get_opt(volume).await?.is_some() {
                    return Ok(Some(Duration::from_secs(1)));
                }
                self.claim_event(
                    claim,
                    EventType::Warning,
                    "ClaimLost",
                    "Bound claim has lost its PersistentVolume. Data on the volume is lost!".into(),
                );
                self.claim_status(claim, "Lost", None).await?;
                return Ok(None);
            }
            // Pre-bound by the user to a volume that does not exist (yet).
            if claim_phase(claim) != "Lost" {
                self.claim_event(
                    claim,
                    EventType::Normal,
                    "FailedBinding",
                    format!("volume \"{volume}\" not found"),
                );
                self.claim_status(claim, "Pending", None).await?;
            }
            return Ok(Some(RESYNC));
        };
        let uid = claim.metadata.uid.as_deref().unwrap_or_default();
        match claim_ref(&pv) {
            // The volume is (or may become) this claim's.
            None => {
                self.bind(claim, &pv).await?;
                Ok(None)
            }
            Some((ns, name, u))
                if ns == claim.metadata.namespace.as_deref().unwrap_or_default()
                    && name == claim.name_any()
                    && (u.is_empty() || u == uid) =>
            {
                if u.is_empty()
                    || claim_phase(claim) != "Bound"
                    || annotation(&claim.metadata, ANN_BIND_COMPLETED) != Some("yes")
                    || self::phase(&pv) != "Bound"
                {
                    self.bind(claim, &pv).await?;
                    return Ok(None);
                }
                self.expand(claim, &pv).await?;
                Ok(None)
            }
            Some(_) => {
                if annotation(&claim.metadata, ANN_BIND_COMPLETED) == Some("yes") {
                    self.claim_event(
                        claim,
                        EventType::Warning,
                        "ClaimMisbound",
                        "Two claims are bound to the same volume, this one is bound incorrectly"
                            .into(),
                    );
                    self.claim_status(claim, "Lost", None).await?;
                } else {
                    self.claim_event(
                        claim,
                        EventType::Warning,
                        "FailedBinding",
                        "volume already bound to a different claim.".into(),
                    );
                    self.claim_status(claim, "Pending", None).await?;
                }
                Ok(Some(RESYNC))
            }
        }
    }

    /// Grows a bound volume to its claim's new request, if its class allows expansion.
    async fn expand(&self, claim: &PersistentVolumeClaim, pv: &PersistentVolume) -> Result<()> {
        let want = bytes(requested(claim));
        let have = bytes(capacity(pv));
        let reported = bytes(
            claim
                .status
                .as_ref()
                .and_then(|s| s.capacity.as_ref())
                .and_then(|c| c.get("storage")),
        );
        if want <= have && reported >= have {
            return Ok(());
        }
        let class = self.classes.get(None, claim_class(claim));
        if want > have {
            if class.is_none_or(|c| c.allow_volume_expansion != Some(true)) {
                return Ok(());
            }
            let mut body = pv.clone();
            if let Some(q) = requested(claim) {
                body.spec
                    .get_or_insert_with(Default::default)
                    .capacity
                    .get_or_insert_with(BTreeMap::new)
                    .insert("storage".into(), q.clone());
            }
            let grown = self
                .volumes_api()
                .replace(&pv.name_any(), &PostParams::default(), &body)
                .await?;
            self.claim_status(claim, "Bound", Some(&grown)).await?;
            self.claim_event(
                claim,
                EventType::Normal,
                "VolumeResizeSuccessful",
                "Resize volume succeeded".into(),
            );
            return Ok(());
        }
        self.claim_status(claim, "Bound", Some(pv)).await
    }

    async fn sync_volume(&self, name: &str) -> Result<Option<Duration>> {
        let Some(pv) = self.volumes.get(None, name) else {
            return Ok(None);
        };
        let Some((ns, claim_name, uid)) = claim_ref(&pv) else {
            // Unclaimed: Available, unless it failed (a Failed volume stays so until the
            // administrator acts).
            if self::phase(&pv) != "Failed" {
                self.volume_phase(&pv, "Available", None).await?;
            }
            return Ok(None);
        };
        if uid.is_empty() {
            // Pre-bound by the user to a claim that has not bound it yet.
            self.volume_phase(&pv, "Available", None).await?;
            return Ok(None);
        }
        let mut claim = self.claims.get(Some(ns), claim_name);
        if claim.is_none() {
            // The cache may lag behind a new claim: ask the apiserver before releasing.
            claim = self.claims_api(ns).get_opt(claim_name).await?.map(Arc::new);
        }
        match claim.filter(|c| c.metadata.uid.as_deref() == Some(uid)) {
            Some(claim) => {
                let volume_name = claim.spec.as_ref().and_then(|s| s.volume_name.as_deref());
                match volume_name {
                    Some(v) if v == name => self.volume_phase(&pv, "Bound", None).await?,
                    // The claim sync binds it.
                    None | Some("") => {}
                    Some(_) => {
                        // The claim went to another volume: undo a binding the binder made.
                        if annotation(&pv.metadata, ANN_BOUND_BY_CONTROLLER) == Some("yes") {
                            let mut body = (*pv).clone();
                            if let Some(s) = body.spec.as_mut() {
                                s.claim_ref = None;
                            }
                            if let Some(a) = body.metadata.annotations.as_mut() {
                                a.remove(ANN_BOUND_BY_CONTROLLER);
                            }
                            let pv = self
                                .volumes_api()
                                .replace(name, &PostParams::default(), &body)
                                .await?;
                            self.volume_phase(&pv, "Available", None).await?;
                        }
                    }
                }
                Ok(None)
            }
            None => self.release(&pv).await,
        }
    }

    /// The claim of a bound volume is gone: Released, then its reclaim policy.
    async fn release(&self, pv: &PersistentVolume) -> Result<Option<Duration>> {
        if !matches!(self::phase(pv), "Released" | "Failed") {
            self.volume_phase(pv, "Released", None).await?;
        }
        if self::phase(pv) == "Failed" || pv.metadata.deletion_timestamp.is_some() {
            return Ok(None);
        }
        let policy = pv
            .spec
            .as_ref()
            .and_then(|s| s.persistent_volume_reclaim_policy.as_deref())
            .unwrap_or("Retain");
        match policy {
            "Delete" => {
                if annotation(&pv.metadata, ANN_PROVISIONED_BY) != Some(LOCAL_PATH_PROVISIONER) {
                    let message = format!(
                        "error getting deleter volume plugin for volume \"{}\": no deletable volume plugin matched",
                        pv.name_any()
                    );
                    self.volume_event(
                        pv,
                        EventType::Warning,
                        "VolumeFailedDelete",
                        message.clone(),
                    );
                    let fresh = self.volumes_api().get(&pv.name_any()).await?;
                    self.volume_phase(&fresh, "Failed", Some(message)).await?;
                    return Ok(None);
                }
                // The node's kubelet removes the directory once the volume is gone.
                match self
                    .volumes_api()
                    .delete(&pv.name_any(), &DeleteParams::background())
                    .await
                {
                    Ok(_) => {
                        tracing::info!(volume = %pv.name_any(), "deleted a released volume (reclaim policy Delete)");
                        Ok(None)
                    }
                    Err(kube::Error::Api(s)) if s.code == 404 => Ok(None),
                    Err(e) => {
                        self.volume_event(
                            pv,
                            EventType::Warning,
                            "VolumeFailedDelete",
                            e.to_string(),
                        );
                        Err(e.into())
                    }
                }
            }
            "Recycle" => {
                let message = "No recycler plugin found for the volume!".to_string();
                self.volume_event(
                    pv,
                    EventType::Warning,
                    "VolumeFailedRecycle",
                    message.clone(),
                );
                let fresh = self.volumes_api().get(&pv.name_any()).await?;
                self.volume_phase(&fresh, "Failed", Some(message)).await?;
                Ok(None)
            }
            // Retain: the administrator decides.
            _ => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use skiff_api::storage::fits;

    fn claim(v: serde_json::Value) -> PersistentVolumeClaim {
        let mut c = json!({
            "metadata": {"name": "data", "namespace": "default", "uid": "c1"},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}},
                     "storageClassName": ""},
        });
        merge(&mut c, v);
        serde_json::from_value(c).unwrap()
    }

    fn volume(name: &str, size: &str, v: serde_json::Value) -> Arc<PersistentVolume> {
        let mut pv = json!({
            "metadata": {"name": name},
            "spec": {"accessModes": ["ReadWriteOnce"], "capacity": {"storage": size},
                     "hostPath": {"path": "/tmp/x"}},
            "status": {"phase": "Available"},
        });
        merge(&mut pv, v);
        Arc::new(serde_json::from_value(pv).unwrap())
    }

    fn merge(a: &mut serde_json::Value, b: serde_json::Value) {
        match (a, b) {
            (serde_json::Value::Object(a), serde_json::Value::Object(b)) => {
                for (k, v) in b {
                    merge(a.entry(k).or_insert(serde_json::Value::Null), v);
                }
            }
            (a, b) => *a = b,
        }
    }

    fn pick(c: &PersistentVolumeClaim, vols: &[Arc<PersistentVolume>]) -> Option<String> {
        find_volume(c, vols, None).map(|v| v.name_any())
    }

    #[test]
    fn the_smallest_volume_that_fits_is_chosen() {
        let vols = [
            volume("big", "10Gi", json!({})),
            volume("small", "512Mi", json!({})),
            volume("right", "2Gi", json!({})),
            volume(
                "rwx-only",
                "1Gi",
                json!({"spec": {"accessModes": ["ReadWriteMany"]}}),
            ),
            volume(
                "classy",
                "1Gi",
                json!({"spec": {"storageClassName": "fast"}}),
            ),
            volume(
                "taken",
                "1Gi",
                json!({"spec": {"claimRef": {"namespace": "default", "name": "other", "uid": "o"}}}),
            ),
            volume("released", "1Gi", json!({"status": {"phase": "Released"}})),
            volume("block", "1Gi", json!({"spec": {"volumeMode": "Block"}})),
        ];
        assert_eq!(pick(&claim(json!({})), &vols).as_deref(), Some("right"));
        assert_eq!(
            pick(&claim(json!({"spec": {"storageClassName": "fast"}})), &vols).as_deref(),
            Some("classy")
        );
        assert_eq!(
            pick(
                &claim(json!({"spec": {"resources": {"requests": {"storage": "20Gi"}}}})),
                &vols
            ),
            None
        );
        let labelled = [
            volume(
                "a",
                "1Gi",
                json!({"metadata": {"labels": {"tier": "gold"}}}),
            ),
            volume("b", "1Gi", json!({})),
        ];
        let selecting = claim(json!({"spec": {"selector": {"matchLabels": {"tier": "gold"}}}}));
        assert_eq!(pick(&selecting, &labelled).as_deref(), Some("a"));
    }

    #[test]
    fn pre_bound_volumes_and_node_affinity_are_honoured() {
        let pre = volume(
            "mine",
            "5Gi",
            json!({"spec": {"claimRef": {"namespace": "default", "name": "data"}}}),
        );
        let vols = [volume("free", "1Gi", json!({})), pre];
        assert_eq!(pick(&claim(json!({})), &vols).as_deref(), Some("mine"));

        let pinned = volume(
            "on-n1",
            "1Gi",
            json!({"spec": {"nodeAffinity": {"required": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": ["n1"]}]}
            ]}}}}),
        );
        let labels =
            |n: &str| BTreeMap::from([("kubernetes.io/hostname".to_string(), n.to_string())]);
        let c = claim(json!({}));
        let (l1, l2) = (labels("n1"), labels("n2"));
        assert!(find_volume(&c, std::slice::from_ref(&pinned), Some(("n1", &l1))).is_some());
        assert!(find_volume(&c, std::slice::from_ref(&pinned), Some(("n2", &l2))).is_none());
    }

    #[test]
    fn a_local_path_volume_is_pinned_to_its_node_and_sized_to_the_claim() {
        let c = claim(json!({"spec": {"storageClassName": "local-path"}}));
        let pv = local_path_volume(&c, &default_class(), "node-2", "/data/node-2/storage/");
        let v = serde_json::to_value(&pv).unwrap();
        assert_eq!(v["metadata"]["name"], "pvc-c1");
        assert_eq!(
            v["spec"]["hostPath"]["path"],
            "/data/node-2/storage/pvc-c1_default_data"
        );
        assert_eq!(v["spec"]["capacity"]["storage"], "1Gi");
        assert_eq!(v["spec"]["persistentVolumeReclaimPolicy"], "Delete");
        assert_eq!(v["spec"]["storageClassName"], "local-path");
        assert_eq!(v["spec"]["claimRef"]["uid"], "c1");
        assert_eq!(
            v["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0]["values"],
            json!(["node-2"])
        );
        assert!(fits(&c, &pv, None));
    }
}
