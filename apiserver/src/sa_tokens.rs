//! ServiceAccount tokens in the running apiserver: authenticating a bearer token this
//! apiserver signed (only while its ServiceAccount, and the pod, secret or node it is bound to,
//! still exist with the same UID), and the TokenRequest subresource
//! (`POST .../serviceaccounts/<name>/token`, what `kubectl create token` and kubelets call).

use std::sync::Arc;

use serde_json::Value;
use skiff_api::{ResourceInfo, resources};

use crate::app::App;
use crate::auth::{AUTHENTICATED, UserInfo};
use crate::error::{ApiError, ApiResult};
use crate::node_authz::{NODE_USER_PREFIX, NODES_GROUP};
use crate::serviceaccount::{
    self, BoundKind, BoundObject, Error, ObjectRef, SigningKey, TokenRequest,
};

/// The signing key and the audiences this apiserver accepts.
pub struct Tokens {
    pub key: SigningKey,
    /// `--api-audiences`; empty means the issuer.
    pub audiences: Vec<String>,
}

fn info(plural: &str) -> &'static ResourceInfo {
    resources::find("", "v1", plural).expect("a core resource")
}

/// The object `namespace/name` of `plural` as the watch cache has it.
fn cached(app: &App, plural: &str, namespace: Option<&str>, name: &str) -> Option<Arc<Value>> {
    let info = info(plural);
    app.registry
        .cache
        .for_resource(info)?
        .get(&info.storage_key(namespace, name))
}

fn uid(obj: &Value) -> &str {
    obj.pointer("/metadata/uid")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// Whether `plural` `namespace/name` exists with `want` as its UID.
fn exists(app: &App, plural: &str, namespace: Option<&str>, r: &ObjectRef) -> bool {
    cached(app, plural, namespace, &r.name).is_some_and(|o| uid(&o) == r.uid)
}

impl App {
    /// The user a ServiceAccount token stands for, if this apiserver signed it and what it
    /// names still exists. `None` both for tokens of other issuers and for refused ones (the
    /// client sees 401 either way); refusals are logged.
    pub fn service_account_user(&self, token: &str) -> Option<UserInfo> {
        let tokens = self.sa_tokens.as_ref()?;
        let verified = match tokens
            .key
            .verify(token, &tokens.audiences, jiff::Timestamp::now())
        {
            Ok(v) => v,
            Err(Error::NotServiceAccountToken) => return None,
            Err(e) => {
                tracing::debug!(error = %e, "refused a service account token");
                return None;
            }
        };
        let ns = verified.namespace.as_str();
        let alive = exists(self, "serviceaccounts", Some(ns), &verified.service_account)
            && verified
                .pod
                .as_ref()
                .is_none_or(|p| exists(self, "pods", Some(ns), p))
            && verified
                .secret
                .as_ref()
                .is_none_or(|s| exists(self, "secrets", Some(ns), s))
            && (!verified.node_bound()
                || verified
                    .node
                    .as_ref()
                    .is_some_and(|n| exists(self, "nodes", None, n)));
        if !alive {
            tracing::debug!(
                subject = %verified.subject,
                "refused a service account token: its service account or bound object is gone"
            );
            return None;
        }
        let u = verified.user();
        let mut groups = u.groups;
        groups.push(AUTHENTICATED.into());
        Some(UserInfo {
            name: u.username,
            uid: u.uid,
            groups,
            extra: u.extra,
        })
    }
}

/// `POST /api/v1/namespaces/<ns>/serviceaccounts/<name>/token`: a signed, audience-bound,
/// expiring token, in upstream's order of checks. Returns the TokenRequest and any warning.
pub fn request(
    app: &App,
    user: Option<&UserInfo>,
    namespace: &str,
    name: &str,
    body: &Value,
) -> ApiResult<(Value, Vec<String>)> {
    let Some(tokens) = app.sa_tokens.as_ref() else {
        return Err(ApiError::not_found(info("serviceaccounts"), name));
    };
    let mut req = TokenRequest::from_body(body, name, namespace)?;
    let sa = cached(app, "serviceaccounts", Some(namespace), name)
        .ok_or_else(|| ApiError::not_found(info("serviceaccounts"), name))?;
    req.validate()?;
    let mut bound = None;
    if let Some(kind) = req.bound_kind()? {
        let r = req
            .bound_object_ref
            .clone()
            .expect("a bound kind comes from a bound object");
        let ns = (kind != BoundKind::Node).then_some(namespace);
        let obj = cached(app, kind.resource(), ns, &r.name)
            .ok_or_else(|| ApiError::not_found(info(kind.resource()), &r.name))?;
        req.check_bound_uid(kind, uid(&obj))?;
        let me = ObjectRef::new(r.name.clone(), uid(&obj));
        bound = Some(match kind {
            BoundKind::Pod => {
                let pod_sa = obj
                    .pointer("/spec/serviceAccountName")
                    .and_then(Value::as_str)
                    .unwrap_or("default");
                if pod_sa != name {
                    return Err(serviceaccount::pod_service_account_mismatch(name));
                }
                let node_name = obj
                    .pointer("/spec/nodeName")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                node_restriction(user, Some(node_name))?;
                let node = (!node_name.is_empty()).then(|| {
                    let node_uid = cached(app, "nodes", None, node_name)
                        .map(|n| uid(&n).to_string())
                        .unwrap_or_default();
                    ObjectRef::new(node_name, node_uid)
                });
                BoundObject::Pod { pod: me, node }
            }
            BoundKind::Secret => BoundObject::Secret(me),
            BoundKind::Node => BoundObject::Node(me),
        });
    }
    if !matches!(bound, Some(BoundObject::Pod { .. })) {
        node_restriction(user, None)?;
    }
    let warning = req.apply_server_limits(&tokens.audiences, None);
    let spec = req.token_spec(
        namespace,
        ObjectRef::new(name, uid(&sa)),
        bound,
        &tokens.audiences,
        true,
    );
    let now = jiff::Timestamp::now();
    let (token, _) = tokens
        .key
        .issue(&spec, now)
        .map_err(|e| ApiError::internal(format!("signing the token: {e}")))?;
    Ok((
        req.response(name, namespace, &token, now),
        warning.into_iter().collect(),
    ))
}

/// NodeRestriction: a kubelet may only ask for tokens bound to a pod on its own node.
fn node_restriction(user: Option<&UserInfo>, pod_node: Option<&str>) -> ApiResult<()> {
    let Some(node) = user
        .filter(|u| u.in_group(NODES_GROUP))
        .and_then(|u| u.name.strip_prefix(NODE_USER_PREFIX))
    else {
        return Ok(());
    };
    match pod_node {
        None => Err(ApiError::forbidden(format!(
            "serviceaccounts/token is forbidden: node {node:?} requested a token not bound to a pod"
        ))),
        Some(n) if n != node => Err(ApiError::forbidden(format!(
            "serviceaccounts/token is forbidden: node {node:?} requested a token bound to a pod scheduled on a different node"
        ))),
        Some(_) => Ok(()),
    }
}
