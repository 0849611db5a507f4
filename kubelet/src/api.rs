//! The slice of the Kubernetes API a pod worker uses, behind one narrow trait: the ConfigMaps
//! and Secrets it reads env from or projects into volumes, the ServiceAccount tokens it
//! projects, the Services it turns into env vars, its pod's status patches and final delete,
//! and Events about the pod. Beside it, [`ReviewApi`]: the TokenReviews and
//! SubjectAccessReviews through which the kubelet's server asks the apiserver who a caller is
//! and what it may do. [`KubeApi`] is the kube-rs implementation of both; [`FakeApi`] keeps
//! everything in memory for unit tests.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use k8s_openapi::api::authentication::v1::{
    BoundObjectReference, TokenRequest, TokenRequestSpec, TokenReview, TokenReviewSpec,
};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use k8s_openapi::api::core::v1::{
    ConfigMap, ObjectReference, PersistentVolume, PersistentVolumeClaim, Pod, Secret, Service,
    ServiceAccount,
};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use serde_json::{Value, json};
use skiff_client::events::{EventType, Recorder};

/// Why a call to the API failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Kube(#[from] kube::Error),
    /// What [`FakeApi`] answers for an object it does not hold.
    #[error("{kind} {namespace}/{name} not found")]
    NotFound {
        kind: &'static str,
        namespace: String,
        name: String,
    },
    /// Any other failure: an answer the kubelet cannot use, or what [`FakeApi`] was told to
    /// answer.
    #[error("{0}")]
    Other(String),
}

impl ApiError {
    /// Whether the object asked for does not exist (a 404), as opposed to the API failing.
    pub fn is_not_found(&self) -> bool {
        match self {
            ApiError::NotFound { .. } => true,
            ApiError::Kube(kube::Error::Api(status)) => status.code == 404,
            ApiError::Kube(_) | ApiError::Other(_) => false,
        }
    }
}

/// What a pod worker reads from and writes to the API.
#[async_trait]
pub trait PodApi: Send + Sync {
    async fn config_map(&self, namespace: &str, name: &str) -> Result<ConfigMap, ApiError>;
    async fn secret(&self, namespace: &str, name: &str) -> Result<Secret, ApiError>;
    async fn persistent_volume_claim(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<PersistentVolumeClaim, ApiError>;
    async fn persistent_volume(&self, name: &str) -> Result<PersistentVolume, ApiError>;
    /// A token of ServiceAccount `service_account` bound to the pod `pod_name`/`pod_uid`
    /// (the TokenRequest subresource, `POST .../serviceaccounts/{name}/token`), valid for
    /// `audiences` (none: the apiserver's own) for about `expiration_seconds`. Returns the
    /// token and when it expires, as the apiserver says.
    async fn request_token(
        &self,
        namespace: &str,
        service_account: &str,
        audiences: Vec<String>,
        expiration_seconds: i64,
        pod_name: &str,
        pod_uid: &str,
    ) -> Result<(String, jiff::Timestamp), ApiError>;
    /// Every Service of `namespace`.
    async fn services(&self, namespace: &str) -> Result<Vec<Service>, ApiError>;
    /// Merge-patches the pod's `status` subresource; returns the pod as stored.
    async fn patch_pod_status(
        &self,
        namespace: &str,
        name: &str,
        status: &Value,
    ) -> Result<Pod, ApiError>;
    /// Deletes the pod object at once (grace 0), only if it still has `uid`.
    async fn delete_pod(&self, namespace: &str, name: &str, uid: &str) -> Result<(), ApiError>;
    /// Records an Event about `object`; never blocks (events are reports, not work).
    fn event(&self, object: ObjectReference, type_: EventType, reason: &str, message: String);
}

/// A user as the authentication API describes one: who a caller of the kubelet's server is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserInfo {
    pub username: String,
    pub uid: String,
    pub groups: Vec<String>,
    pub extra: BTreeMap<String, Vec<String>>,
}

impl UserInfo {
    /// A user with a name and groups, as a client certificate names one (CN and O).
    pub fn new(username: &str, groups: &[&str]) -> UserInfo {
        UserInfo {
            username: username.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            ..UserInfo::default()
        }
    }
}

/// What the kubelet's server asks the apiserver about its callers: the reviews a kubelet
/// makes with `--authentication-token-webhook` and `--authorization-mode=Webhook`.
#[async_trait]
pub trait ReviewApi: Send + Sync {
    /// Who a bearer token belongs to (a TokenReview): `None` if the apiserver says it
    /// authenticates no one.
    async fn token_review(&self, token: &str) -> Result<Option<UserInfo>, ApiError>;
    /// Whether `user` may do what `attributes` describe (a SubjectAccessReview).
    async fn access_review(
        &self,
        user: &UserInfo,
        attributes: &ResourceAttributes,
    ) -> Result<bool, ApiError>;
}

/// [`PodApi`] and [`ReviewApi`] on a kube-rs client, with Events through the kubelet's
/// recorder.
pub struct KubeApi {
    client: kube::Client,
    events: Recorder,
}

impl KubeApi {
    pub fn new(client: kube::Client, events: Recorder) -> KubeApi {
        KubeApi { client, events }
    }
}

#[async_trait]
impl PodApi for KubeApi {
    async fn config_map(&self, namespace: &str, name: &str) -> Result<ConfigMap, ApiError> {
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), namespace);
        Ok(api.get(name).await?)
    }

    async fn secret(&self, namespace: &str, name: &str) -> Result<Secret, ApiError> {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
        Ok(api.get(name).await?)
    }

    async fn persistent_volume_claim(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<PersistentVolumeClaim, ApiError> {
        let api: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), namespace);
        Ok(api.get(name).await?)
    }

    async fn persistent_volume(&self, name: &str) -> Result<PersistentVolume, ApiError> {
        let api: Api<PersistentVolume> = Api::all(self.client.clone());
        Ok(api.get(name).await?)
    }

    async fn request_token(
        &self,
        namespace: &str,
        service_account: &str,
        audiences: Vec<String>,
        expiration_seconds: i64,
        pod_name: &str,
        pod_uid: &str,
    ) -> Result<(String, jiff::Timestamp), ApiError> {
        let api: Api<ServiceAccount> = Api::namespaced(self.client.clone(), namespace);
        let request = TokenRequest {
            metadata: Default::default(),
            spec: TokenRequestSpec {
                audiences,
                expiration_seconds: Some(expiration_seconds),
                bound_object_ref: Some(BoundObjectReference {
                    api_version: Some("v1".into()),
                    kind: Some("Pod".into()),
                    name: Some(pod_name.into()),
                    uid: Some(pod_uid.into()),
                }),
            },
            status: None,
        };
        let answer = api
            .create_token_request(service_account, &PostParams::default(), &request)
            .await?;
        let status = answer.status.ok_or_else(|| {
            ApiError::Other(format!(
                "the apiserver answered the token request for serviceaccount \
                 {namespace}/{service_account} without a status"
            ))
        })?;
        Ok((status.token, status.expiration_timestamp.0))
    }

    async fn services(&self, namespace: &str) -> Result<Vec<Service>, ApiError> {
        let api: Api<Service> = Api::namespaced(self.client.clone(), namespace);
        Ok(api.list(&Default::default()).await?.items)
    }

    async fn patch_pod_status(
        &self,
        namespace: &str,
        name: &str,
        status: &Value,
    ) -> Result<Pod, ApiError> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let patch = json!({ "status": status });
        Ok(api
            .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?)
    }

    async fn delete_pod(&self, namespace: &str, name: &str, uid: &str) -> Result<(), ApiError> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: Some(uid.to_string()),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        api.delete(name, &params).await?;
        Ok(())
    }

    fn event(&self, object: ObjectReference, type_: EventType, reason: &str, message: String) {
        self.events.publish(object, type_, reason, message);
    }
}

#[async_trait]
impl ReviewApi for KubeApi {
    async fn token_review(&self, token: &str) -> Result<Option<UserInfo>, ApiError> {
        let api: Api<TokenReview> = Api::all(self.client.clone());
        // No audiences: the kubelet accepts tokens meant for the apiserver, as a kubelet
        // started without an audience of its own does.
        let review = TokenReview {
            metadata: Default::default(),
            spec: TokenReviewSpec {
                token: Some(token.to_string()),
                audiences: None,
            },
            status: None,
        };
        let answer = api.create(&PostParams::default(), &review).await?;
        let Some(status) = answer.status else {
            return Err(ApiError::Other(
                "the apiserver answered a token review without a status".into(),
            ));
        };
        if status.authenticated != Some(true) {
            return Ok(None);
        }
        let user = status.user.unwrap_or_default();
        Ok(Some(UserInfo {
            username: user.username.unwrap_or_default(),
            uid: user.uid.unwrap_or_default(),
            groups: user.groups.unwrap_or_default(),
            extra: user.extra.unwrap_or_default(),
        }))
    }

    async fn access_review(
        &self,
        user: &UserInfo,
        attributes: &ResourceAttributes,
    ) -> Result<bool, ApiError> {
        let api: Api<SubjectAccessReview> = Api::all(self.client.clone());
        let review = SubjectAccessReview {
            metadata: Default::default(),
            spec: access_review_spec(user, attributes),
            status: None,
        };
        let answer = api.create(&PostParams::default(), &review).await?;
        Ok(answer.status.is_some_and(|s| s.allowed))
    }
}

/// The spec of a SubjectAccessReview asking whether `user` may do `attributes`; empty
/// fields are left out, as client-go leaves them.
pub fn access_review_spec(
    user: &UserInfo,
    attributes: &ResourceAttributes,
) -> SubjectAccessReviewSpec {
    let some = |s: &str| Some(s.to_string()).filter(|s| !s.is_empty());
    SubjectAccessReviewSpec {
        user: some(&user.username),
        uid: some(&user.uid),
        groups: Some(user.groups.clone()).filter(|g| !g.is_empty()),
        extra: Some(user.extra.clone()).filter(|e| !e.is_empty()),
        resource_attributes: Some(attributes.clone()),
        non_resource_attributes: None,
    }
}

/// One Event that [`FakeApi`] recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedEvent {
    /// The object's `fieldPath` (`spec.containers{name}`), if the event is about a container.
    pub field_path: Option<String>,
    pub type_: EventType,
    pub reason: String,
    pub message: String,
}

/// One token request that [`FakeApi`] answered (or refused).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedTokenRequest {
    pub namespace: String,
    pub service_account: String,
    pub audiences: Vec<String>,
    pub expiration_seconds: i64,
    /// The bound object: always a Pod.
    pub pod_name: String,
    pub pod_uid: String,
}

#[derive(Default)]
struct FakeState {
    config_maps: BTreeMap<(String, String), ConfigMap>,
    secrets: BTreeMap<(String, String), Secret>,
    claims: BTreeMap<(String, String), PersistentVolumeClaim>,
    volumes: BTreeMap<String, PersistentVolume>,
    services: BTreeMap<(String, String), Service>,
    pods: BTreeMap<(String, String), Pod>,
    deleted: Vec<(String, String)>,
    events: Vec<RecordedEvent>,
    token_requests: Vec<RecordedTokenRequest>,
    /// What token requests fail with, while set.
    token_error: Option<String>,
    /// The users bearer tokens belong to.
    tokens: BTreeMap<String, UserInfo>,
    /// Who may do what: (user or group, verb, subresource), `*` for any.
    grants: Vec<(String, String, String)>,
    /// The tokens reviewed so far, oldest first.
    token_reviews: Vec<String>,
    /// The access reviews so far, oldest first: (username, verb, subresource).
    access_reviews: Vec<(String, String, String)>,
    /// What reviews fail with, while set.
    review_error: Option<String>,
}

/// An in-memory [`PodApi`] for unit tests. Cloning shares the state.
#[derive(Clone, Default)]
pub struct FakeApi {
    state: Arc<Mutex<FakeState>>,
}

fn key(namespace: &str, name: &str) -> (String, String) {
    (namespace.to_string(), name.to_string())
}

fn meta_key(meta: &kube::api::ObjectMeta) -> (String, String) {
    key(
        meta.namespace.as_deref().unwrap_or("default"),
        meta.name.as_deref().unwrap_or_default(),
    )
}

/// RFC 7386 JSON merge patch: objects merge key by key, `null` removes, anything else replaces.
fn merge(target: &mut Value, patch: &Value) {
    match (target.as_object_mut(), patch.as_object()) {
        (Some(t), Some(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        _ => *target = patch.clone(),
    }
}

impl FakeApi {
    pub fn new() -> FakeApi {
        FakeApi::default()
    }

    fn lock(&self) -> MutexGuard<'_, FakeState> {
        self.state.lock().expect("fake API state poisoned")
    }

    /// Stores a ConfigMap (namespace `default` unless its metadata names one).
    pub fn add_config_map(&self, cm: ConfigMap) {
        self.lock().config_maps.insert(meta_key(&cm.metadata), cm);
    }

    pub fn add_secret(&self, secret: Secret) {
        self.lock()
            .secrets
            .insert(meta_key(&secret.metadata), secret);
    }

    pub fn add_claim(&self, claim: PersistentVolumeClaim) {
        self.lock().claims.insert(meta_key(&claim.metadata), claim);
    }

    pub fn add_volume(&self, pv: PersistentVolume) {
        let name = pv.metadata.name.clone().unwrap_or_default();
        self.lock().volumes.insert(name, pv);
    }

    pub fn add_service(&self, svc: Service) {
        self.lock().services.insert(meta_key(&svc.metadata), svc);
    }

    pub fn add_pod(&self, pod: Pod) {
        self.lock().pods.insert(meta_key(&pod.metadata), pod);
    }

    /// The pod as stored (with the status patches applied).
    pub fn pod(&self, namespace: &str, name: &str) -> Option<Pod> {
        self.lock().pods.get(&key(namespace, name)).cloned()
    }

    /// The pods deleted so far, as (namespace, name).
    pub fn deleted(&self) -> Vec<(String, String)> {
        self.lock().deleted.clone()
    }

    /// The events recorded so far, oldest first.
    pub fn events(&self) -> Vec<RecordedEvent> {
        self.lock().events.clone()
    }

    /// The token requests so far, oldest first. The n-th one (from 1) was answered with the
    /// token `fake-token-<n>`, unless it failed.
    pub fn token_requests(&self) -> Vec<RecordedTokenRequest> {
        self.lock().token_requests.clone()
    }

    /// Makes token requests fail with `message` from now on (None: succeed again).
    pub fn fail_token_requests(&self, message: Option<&str>) {
        self.lock().token_error = message.map(String::from);
    }

    /// Makes `token` authenticate as `user` in token reviews.
    pub fn add_token(&self, token: &str, user: UserInfo) {
        self.lock().tokens.insert(token.into(), user);
    }

    /// Lets `subject` (a username or a group) do `verb` on `subresource` of nodes in access
    /// reviews; `*` stands for any verb or subresource.
    pub fn grant(&self, subject: &str, verb: &str, subresource: &str) {
        self.lock()
            .grants
            .push((subject.into(), verb.into(), subresource.into()));
    }

    /// The tokens reviewed so far, oldest first.
    pub fn token_reviews(&self) -> Vec<String> {
        self.lock().token_reviews.clone()
    }

    /// The access reviews so far, oldest first, as (username, verb, subresource).
    pub fn access_reviews(&self) -> Vec<(String, String, String)> {
        self.lock().access_reviews.clone()
    }

    /// Makes token and access reviews fail with `message` from now on (None: answer again).
    pub fn fail_reviews(&self, message: Option<&str>) {
        self.lock().review_error = message.map(String::from);
    }
}

#[async_trait]
impl ReviewApi for FakeApi {
    async fn token_review(&self, token: &str) -> Result<Option<UserInfo>, ApiError> {
        let mut state = self.lock();
        state.token_reviews.push(token.into());
        if let Some(message) = &state.review_error {
            return Err(ApiError::Other(message.clone()));
        }
        Ok(state.tokens.get(token).cloned())
    }

    async fn access_review(
        &self,
        user: &UserInfo,
        attributes: &ResourceAttributes,
    ) -> Result<bool, ApiError> {
        let mut state = self.lock();
        let verb = attributes.verb.clone().unwrap_or_default();
        let subresource = attributes.subresource.clone().unwrap_or_default();
        state
            .access_reviews
            .push((user.username.clone(), verb.clone(), subresource.clone()));
        if let Some(message) = &state.review_error {
            return Err(ApiError::Other(message.clone()));
        }
        let matches = |want: &str, have: &str| want == "*" || want == have;
        Ok(attributes.resource.as_deref() == Some("nodes")
            && state.grants.iter().any(|(subject, v, sub)| {
                (*subject == user.username || user.groups.contains(subject))
                    && matches(v, &verb)
                    && matches(sub, &subresource)
            }))
    }
}

#[async_trait]
impl PodApi for FakeApi {
    async fn config_map(&self, namespace: &str, name: &str) -> Result<ConfigMap, ApiError> {
        self.lock()
            .config_maps
            .get(&key(namespace, name))
            .cloned()
            .ok_or_else(|| ApiError::NotFound {
                kind: "configmap",
                namespace: namespace.into(),
                name: name.into(),
            })
    }

    async fn secret(&self, namespace: &str, name: &str) -> Result<Secret, ApiError> {
        self.lock()
            .secrets
            .get(&key(namespace, name))
            .cloned()
            .ok_or_else(|| ApiError::NotFound {
                kind: "secret",
                namespace: namespace.into(),
                name: name.into(),
            })
    }

    async fn persistent_volume_claim(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<PersistentVolumeClaim, ApiError> {
        self.lock()
            .claims
            .get(&key(namespace, name))
            .cloned()
            .ok_or_else(|| ApiError::NotFound {
                kind: "persistentvolumeclaim",
                namespace: namespace.into(),
                name: name.into(),
            })
    }

    async fn persistent_volume(&self, name: &str) -> Result<PersistentVolume, ApiError> {
        self.lock()
            .volumes
            .get(name)
            .cloned()
            .ok_or_else(|| ApiError::NotFound {
                kind: "persistentvolume",
                namespace: String::new(),
                name: name.into(),
            })
    }

    /// Answers `fake-token-<n>`, valid for `expiration_seconds` from now (wall-clock time, as
    /// the apiserver's answer is).
    async fn request_token(
        &self,
        namespace: &str,
        service_account: &str,
        audiences: Vec<String>,
        expiration_seconds: i64,
        pod_name: &str,
        pod_uid: &str,
    ) -> Result<(String, jiff::Timestamp), ApiError> {
        let mut state = self.lock();
        state.token_requests.push(RecordedTokenRequest {
            namespace: namespace.into(),
            service_account: service_account.into(),
            audiences,
            expiration_seconds,
            pod_name: pod_name.into(),
            pod_uid: pod_uid.into(),
        });
        if let Some(message) = &state.token_error {
            return Err(ApiError::Other(message.clone()));
        }
        let token = format!("fake-token-{}", state.token_requests.len());
        let expires = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(expiration_seconds);
        Ok((token, expires))
    }

    async fn services(&self, namespace: &str) -> Result<Vec<Service>, ApiError> {
        Ok(self
            .lock()
            .services
            .iter()
            .filter(|((ns, _), _)| ns == namespace)
            .map(|(_, s)| s.clone())
            .collect())
    }

    async fn patch_pod_status(
        &self,
        namespace: &str,
        name: &str,
        status: &Value,
    ) -> Result<Pod, ApiError> {
        let mut state = self.lock();
        let Some(pod) = state.pods.get_mut(&key(namespace, name)) else {
            return Err(ApiError::NotFound {
                kind: "pod",
                namespace: namespace.into(),
                name: name.into(),
            });
        };
        let mut value = serde_json::to_value(&*pod).expect("a pod serializes");
        merge(&mut value, &json!({ "status": status }));
        *pod = serde_json::from_value(value).expect("a merged pod status deserializes");
        Ok(pod.clone())
    }

    async fn delete_pod(&self, namespace: &str, name: &str, uid: &str) -> Result<(), ApiError> {
        let mut state = self.lock();
        let k = key(namespace, name);
        let stored_uid = state.pods.get(&k).and_then(|p| p.metadata.uid.clone());
        if stored_uid.as_deref() != Some(uid) {
            return Err(ApiError::NotFound {
                kind: "pod",
                namespace: namespace.into(),
                name: name.into(),
            });
        }
        state.pods.remove(&k);
        state.deleted.push(k);
        Ok(())
    }

    fn event(&self, object: ObjectReference, type_: EventType, reason: &str, message: String) {
        self.lock().events.push(RecordedEvent {
            field_path: object.field_path,
            type_,
            reason: reason.to_string(),
            message,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_patches_objects_replaces_arrays_and_removes_nulls() {
        let mut target = json!({ "a": { "b": 1, "c": [1, 2] }, "d": "x" });
        merge(
            &mut target,
            &json!({ "a": { "c": [3], "e": true }, "d": null }),
        );
        assert_eq!(target, json!({ "a": { "b": 1, "c": [3], "e": true } }));
    }

    #[tokio::test]
    async fn the_fake_deletes_only_with_the_right_uid() {
        let api = FakeApi::new();
        let mut pod = Pod::default();
        pod.metadata.name = Some("p".into());
        pod.metadata.uid = Some("u1".into());
        api.add_pod(pod);
        assert!(api.delete_pod("default", "p", "u2").await.is_err());
        assert!(api.pod("default", "p").is_some());
        api.delete_pod("default", "p", "u1").await.unwrap();
        assert!(api.pod("default", "p").is_none());
        assert_eq!(api.deleted(), vec![("default".into(), "p".into())]);
    }

    /// Serves one HTTP request on 127.0.0.1 with `answer` (JSON) and returns the request's
    /// head and body.
    async fn one_request(answer: &'static str) -> (u16, tokio::task::JoinHandle<(String, Value)>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            let (mut conn, _) = listener.accept().await.unwrap();
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            let (head, body_start, length) = loop {
                let n = conn.read(&mut chunk).await.unwrap();
                assert!(n > 0, "the client hung up");
                buf.extend_from_slice(&chunk[..n]);
                if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
                    let length = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length: "))
                        .and_then(|v| v.trim().parse::<usize>().ok())
                        .unwrap_or(0);
                    break (head, end + 4, length);
                }
            };
            while buf.len() < body_start + length {
                let n = conn.read(&mut chunk).await.unwrap();
                assert!(n > 0, "the client hung up");
                buf.extend_from_slice(&chunk[..n]);
            }
            let reply = format!(
                "HTTP/1.1 201 Created\r\ncontent-type: application/json\r\n\
                 content-length: {}\r\nconnection: close\r\n\r\n{answer}",
                answer.len()
            );
            conn.write_all(reply.as_bytes()).await.unwrap();
            let body = serde_json::from_slice(&buf[body_start..body_start + length]).unwrap();
            (head, body)
        });
        (port, task)
    }

    /// A [`KubeApi`] on the apiserver at 127.0.0.1:`port`.
    fn kube_api(port: u16) -> KubeApi {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let config = kube::Config::new(format!("http://127.0.0.1:{port}").parse().unwrap());
        let client = kube::Client::try_from(config).unwrap();
        let events = Recorder::new(
            client.clone(),
            "kubelet",
            "node-1",
            tokio_util::sync::CancellationToken::new(),
        );
        KubeApi::new(client, events)
    }

    #[tokio::test]
    async fn token_review_posts_the_token_and_reads_the_user() {
        let (port, request) = one_request(
            r#"{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview",
                "metadata":{"creationTimestamp":null},"spec":{"token":"abc"},
                "status":{"authenticated":true,"user":{
                    "username":"system:serviceaccount:monitoring:scraper","uid":"u-1",
                    "groups":["system:serviceaccounts","system:authenticated"],
                    "extra":{"authentication.kubernetes.io/pod-name":["scraper-0"]}}}}"#,
        )
        .await;
        let user = kube_api(port).token_review("abc").await.unwrap().unwrap();
        assert_eq!(user.username, "system:serviceaccount:monitoring:scraper");
        assert_eq!(user.uid, "u-1");
        assert_eq!(
            user.groups,
            ["system:serviceaccounts", "system:authenticated"]
        );
        assert_eq!(
            user.extra["authentication.kubernetes.io/pod-name"],
            ["scraper-0"]
        );
        let (head, body) = request.await.unwrap();
        assert!(
            head.starts_with("post /apis/authentication.k8s.io/v1/tokenreviews"),
            "{head}"
        );
        assert_eq!(
            body,
            json!({
                "apiVersion": "authentication.k8s.io/v1",
                "kind": "TokenReview",
                "metadata": {},
                "spec": { "token": "abc" }
            })
        );
    }

    #[tokio::test]
    async fn a_token_the_apiserver_does_not_authenticate_names_no_one() {
        let (port, _request) = one_request(
            r#"{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview",
                "metadata":{},"spec":{"token":"abc"},
                "status":{"authenticated":false,"user":{},"error":"token has expired"}}"#,
        )
        .await;
        assert_eq!(kube_api(port).token_review("abc").await.unwrap(), None);
    }

    #[tokio::test]
    async fn access_review_posts_a_subject_access_review_for_the_node() {
        let (port, request) = one_request(
            r#"{"apiVersion":"authorization.k8s.io/v1","kind":"SubjectAccessReview",
                "metadata":{"creationTimestamp":null},"spec":{},
                "status":{"allowed":true,"reason":"RBAC: allowed"}}"#,
        )
        .await;
        let user = UserInfo::new("kube-apiserver-kubelet-client", &["system:masters"]);
        let attributes = ResourceAttributes {
            verb: Some("create".into()),
            version: Some("v1".into()),
            resource: Some("nodes".into()),
            subresource: Some("proxy".into()),
            name: Some("node-1".into()),
            ..ResourceAttributes::default()
        };
        assert!(
            kube_api(port)
                .access_review(&user, &attributes)
                .await
                .unwrap()
        );
        let (head, body) = request.await.unwrap();
        assert!(
            head.starts_with("post /apis/authorization.k8s.io/v1/subjectaccessreviews"),
            "{head}"
        );
        assert_eq!(
            body,
            json!({
                "apiVersion": "authorization.k8s.io/v1",
                "kind": "SubjectAccessReview",
                "metadata": {},
                "spec": {
                    "user": "kube-apiserver-kubelet-client",
                    "groups": ["system:masters"],
                    "resourceAttributes": {
                        "verb": "create",
                        "version": "v1",
                        "resource": "nodes",
                        "subresource": "proxy",
                        "name": "node-1"
                    }
                }
            })
        );
    }

    #[tokio::test]
    async fn the_fake_allows_what_it_was_granted() {
        let api = FakeApi::new();
        api.grant("system:masters", "*", "*");
        api.grant("alice", "get", "stats");
        let attrs = |verb: &str, sub: &str| ResourceAttributes {
            verb: Some(verb.into()),
            resource: Some("nodes".into()),
            subresource: Some(sub.into()),
            ..ResourceAttributes::default()
        };
        let master = UserInfo::new("apiserver", &["system:masters"]);
        let alice = UserInfo::new("alice", &[]);
        assert!(
            api.access_review(&master, &attrs("create", "proxy"))
                .await
                .unwrap()
        );
        assert!(
            api.access_review(&alice, &attrs("get", "stats"))
                .await
                .unwrap()
        );
        assert!(
            !api.access_review(&alice, &attrs("get", "proxy"))
                .await
                .unwrap()
        );
        assert!(
            !api.access_review(&alice, &attrs("create", "stats"))
                .await
                .unwrap()
        );
    }

    #[tokio::test]
    async fn request_token_posts_a_token_request_bound_to_the_pod() {
        let (port, request) = one_request(
            r#"{"apiVersion":"authentication.k8s.io/v1","kind":"TokenRequest",
                "metadata":{"name":"builder","namespace":"apps"},
                "spec":{"audiences":["https://kubernetes.default.svc.cluster.local"],
                        "expirationSeconds":3607},
                "status":{"token":"eyJhbGciOi.x.y","expirationTimestamp":"2030-01-02T03:04:05Z"}}"#,
        )
        .await;
        let _ = rustls::crypto::ring::default_provider().install_default();
        let config = kube::Config::new(format!("http://127.0.0.1:{port}").parse().unwrap());
        let client = kube::Client::try_from(config).unwrap();
        let events = Recorder::new(
            client.clone(),
            "kubelet",
            "node-1",
            tokio_util::sync::CancellationToken::new(),
        );
        let api = KubeApi::new(client, events);
        let (token, expires) = api
            .request_token("apps", "builder", vec![], 3607, "web", "uid-web")
            .await
            .unwrap();
        assert_eq!(token, "eyJhbGciOi.x.y");
        assert_eq!(expires, "2030-01-02T03:04:05Z".parse().unwrap());
        let (head, body) = request.await.unwrap();
        assert!(
            head.starts_with("post /api/v1/namespaces/apps/serviceaccounts/builder/token"),
            "{head}"
        );
        assert_eq!(
            body,
            json!({
                "apiVersion": "authentication.k8s.io/v1",
                "kind": "TokenRequest",
                "metadata": {},
                "spec": {
                    "audiences": [],
                    "expirationSeconds": 3607,
                    "boundObjectRef": {
                        "apiVersion": "v1",
                        "kind": "Pod",
                        "name": "web",
                        "uid": "uid-web"
                    }
                }
            })
        );
    }
}
