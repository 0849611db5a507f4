//! API errors as Kubernetes `Status` objects: the code, reason and message clients (kubectl,
//! kube-rs, the Python client) parse and print.

use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde_json::{Value, json};
use skiff_api::{FieldError, ResourceInfo};
use skiff_store::StoreError;

/// A failed API request, rendered as a `Status` object.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    pub details: Option<Value>,
}

/// `pods` or `deployments.apps`, as Kubernetes names a resource in messages.
pub fn qualified(info: &ResourceInfo) -> String {
    if info.group.is_empty() {
        info.plural.to_string()
    } else {
        format!("{}.{}", info.plural, info.group)
    }
}

fn details(info: &ResourceInfo, name: &str) -> Value {
    status_details(Some(name), info.group, info.plural)
}

/// A Status's `details` in the order kube-apiserver writes `StatusDetails`: `name`, `group`
/// (both left out when empty), `kind`.
pub fn status_details(name: Option<&str>, group: &str, kind: &str) -> Value {
    let mut d = serde_json::Map::new();
    if let Some(name) = name.filter(|n| !n.is_empty()) {
        d.insert("name".into(), json!(name));
    }
    if !group.is_empty() {
        d.insert("group".into(), json!(group));
    }
    d.insert("kind".into(), json!(kind));
    Value::Object(d)
}

impl ApiError {
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            code,
            reason,
            message: message.into(),
            details: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    pub fn unauthorized() -> Self {
        Self::new(401, "Unauthorized", "Unauthorized")
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(403, "Forbidden", message)
    }

    /// 403 for a request the authorizers did not allow, worded as kube-apiserver words it:
    /// `pods "web" is forbidden: User "bob" cannot delete resource "pods" in API group "" in
    /// the namespace "default"`, with the authorizers' reason appended when they gave one.
    pub fn forbidden_request(
        user: &str,
        attrs: &crate::auth::Attributes<'_>,
        reason: &str,
    ) -> Self {
        let mut why = attrs.forbidden_message(user);
        if !reason.is_empty() {
            why = format!("{why}: {reason}");
        }
        if !attrs.resource_request {
            return ApiError {
                details: Some(json!({})),
                ..Self::forbidden(format!("forbidden: {why}"))
            };
        }
        let qualified = if attrs.group.is_empty() {
            attrs.resource.to_string()
        } else {
            format!("{}.{}", attrs.resource, attrs.group)
        };
        let name = attrs.name.filter(|n| !n.is_empty());
        let details = status_details(name, attrs.group, attrs.resource);
        let message = match name {
            Some(name) => format!("{qualified} \"{name}\" is forbidden: {why}"),
            None => format!("{qualified} is forbidden: {why}"),
        };
        ApiError {
            details: Some(details),
            ..Self::forbidden(message)
        }
    }

    pub fn not_found(info: &ResourceInfo, name: &str) -> Self {
        ApiError {
            details: Some(details(info, name)),
            ..Self::new(
                404,
                "NotFound",
                format!("{} \"{name}\" not found", qualified(info)),
            )
        }
    }

    pub fn path_not_found() -> Self {
        Self::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
    }

    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        Self::new(405, "MethodNotAllowed", message)
    }

    pub fn not_acceptable(message: impl Into<String>) -> Self {
        Self::new(406, "NotAcceptable", message)
    }

    pub fn already_exists(info: &ResourceInfo, name: &str) -> Self {
        ApiError {
            details: Some(details(info, name)),
            ..Self::new(
                409,
                "AlreadyExists",
                format!("{} \"{name}\" already exists", qualified(info)),
            )
        }
    }

    pub fn conflict(info: &ResourceInfo, name: &str, why: &str) -> Self {
        ApiError {
            details: Some(details(info, name)),
            ..Self::new(
                409,
                "Conflict",
                format!(
                    "Operation cannot be fulfilled on {} \"{name}\": {why}",
                    qualified(info)
                ),
            )
        }
    }

    pub fn modified(info: &ResourceInfo, name: &str) -> Self {
        Self::conflict(
            info,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }

    pub fn gone(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message)
    }

    pub fn too_large(message: impl Into<String>) -> Self {
        Self::new(413, "RequestEntityTooLarge", message)
    }

    pub fn unsupported_media_type(content_type: &str) -> Self {
        Self::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf, application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json, application/apply-patch+yaml (got {content_type:?})"
            ),
        )
    }

    /// 422 Invalid with one cause per field error.
    pub fn invalid(info: &ResourceInfo, name: &str, errors: &[FieldError]) -> Self {
        let messages: Vec<String> = errors.iter().map(|e| e.message()).collect();
        let joined = if messages.len() == 1 {
            messages[0].clone()
        } else {
            format!("[{}]", messages.join(", "))
        };
        let causes: Vec<Value> = errors
            .iter()
            .map(|e| {
                let full = e.message();
                let msg = full
                    .strip_prefix(&format!("{}: ", e.field))
                    .unwrap_or(&full)
                    .to_string();
                json!({ "reason": e.kind.reason(), "message": msg, "field": e.field })
            })
            .collect();
        let mut d = details(info, name);
        d["kind"] = json!(info.kind);
        d["causes"] = json!(causes);
        let kind = if info.group.is_empty() {
            info.kind.to_string()
        } else {
            format!("{}.{}", info.kind, info.group)
        };
        ApiError {
            details: Some(d),
            ..Self::new(
                422,
                "Invalid",
                format!("{kind} \"{name}\" is invalid: {joined}"),
            )
        }
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, "InternalError", message)
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(503, "ServiceUnavailable", message)
    }

    /// A read at a resourceVersion the store has not reached, as kube-apiserver words it:
    /// client-go's reflector recognises the case by the `ResourceVersionTooLarge` cause and
    /// retries after `retryAfterSeconds` instead of failing.
    pub fn too_large_resource_version(requested: i64, current: i64) -> Self {
        ApiError {
            details: Some(json!({
                "causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}],
                "retryAfterSeconds": 1,
            })),
            ..Self::new(
                504,
                "Timeout",
                format!("Timeout: Too large resource version: {requested}, current: {current}"),
            )
        }
    }

    /// Maps a store error for resource `info`/`name` to the API error users expect.
    pub fn from_store(err: StoreError, info: &ResourceInfo, name: &str) -> Self {
        match err {
            StoreError::AlreadyExists { .. } => Self::already_exists(info, name),
            StoreError::NotFound { .. } => Self::not_found(info, name),
            StoreError::Conflict { .. } => Self::modified(info, name),
            StoreError::Compacted { .. } => Self::gone(format!("too old resource version: {err}")),
            StoreError::FutureRevision { requested, current } => {
                Self::too_large_resource_version(requested, current)
            }
            // kube-apiserver answers etcd's "request is too large" with 413 and etcd's words.
            StoreError::RequestTooLarge { .. } => Self::too_large(err.to_string()),
            StoreError::Backend(m) => Self::internal(format!("storage error: {m}")),
        }
    }

    /// The `Status` object.
    pub fn to_status(&self) -> Value {
        // Field order as kube-apiserver writes metav1.Status: details come before code.
        let mut s = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
        });
        if let Some(d) = &self.details {
            s["details"] = d.clone();
        }
        s["code"] = json!(self.code);
        s
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.code, self.reason, self.message)
    }
}

impl std::error::Error for ApiError {}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self.to_status()).unwrap_or_default();
        (
            code,
            [(http::header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response()
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forbidden_status_has_kube_apiservers_shape() {
        let attrs = crate::auth::Attributes {
            verb: "delete",
            resource_request: true,
            group: "apps",
            version: "v1",
            resource: "deployments",
            namespace: Some("team"),
            name: Some("web"),
            ..Default::default()
        };
        let status = ApiError::forbidden_request("bob", &attrs, "").to_status();
        assert_eq!(
            status.to_string(),
            r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"deployments.apps \"web\" is forbidden: User \"bob\" cannot delete resource \"deployments\" in API group \"apps\" in the namespace \"team\"","reason":"Forbidden","details":{"name":"web","group":"apps","kind":"deployments"},"code":403}"#
        );
    }

    #[test]
    fn a_future_resource_version_is_a_timeout_client_go_retries() {
        let err = StoreError::FutureRevision {
            requested: 99,
            current: 7,
        };
        let info =
            skiff_api::resources::find("", "v1", "configmaps").expect("configmaps are served");
        let status = ApiError::from_store(err, info, "").to_status();
        assert_eq!(
            status.to_string(),
            r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"Timeout: Too large resource version: 99, current: 7","reason":"Timeout","details":{"causes":[{"reason":"ResourceVersionTooLarge","message":"Too large resource version"}],"retryAfterSeconds":1},"code":504}"#
        );
    }
}
