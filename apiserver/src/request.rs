//! Request decoding: which resource a path names, query parameters, content negotiation and
//! body decoding.

use std::collections::HashMap;

use bytes::Bytes;
use http::HeaderMap;
use serde_json::Value;
use skiff_api::{ResourceInfo, resources};

use crate::error::{ApiError, ApiResult};

/// Bodies larger than this are refused with 413 (kube-apiserver's limit is 3 MiB).
pub const MAX_BODY: usize = 3 * 1024 * 1024;

/// What a resource path names.
#[derive(Debug, Clone)]
pub struct Target {
    pub info: &'static ResourceInfo,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<String>,
}

/// A request path split into group, version and the rest.
#[derive(Debug, Clone)]
pub enum ApiPath<'a> {
    /// `/api`
    CoreVersions,
    /// `/apis`
    Groups,
    /// `/apis/<group>`
    Group(&'a str),
    /// `/api/v1` or `/apis/<group>/<version>`
    GroupVersion(&'a str, &'a str),
    /// Anything below a group version.
    Resource(Target),
}

/// Parses `/api/...` and `/apis/...` paths.
pub fn parse_path(path: &str) -> ApiResult<ApiPath<'_>> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match segs.as_slice() {
        ["api"] => return Ok(ApiPath::CoreVersions),
        ["apis"] => return Ok(ApiPath::Groups),
        ["apis", g] => return Ok(ApiPath::Group(g)),
        ["api", v] => return Ok(ApiPath::GroupVersion("", v)),
        ["apis", g, v] => return Ok(ApiPath::GroupVersion(g, v)),
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return Err(ApiError::path_not_found()),
    };
    let lookup =
        |plural: &str| resources::find(group, version, plural).ok_or_else(ApiError::path_not_found);
    let owned = |s: &&str| Some(s.to_string());
    let target = match rest {
        ["namespaces", ns, plural, tail @ ..] if !matches!(*plural, "status" | "finalize") => {
            let info = lookup(plural)?;
            if !info.namespaced {
                return Err(ApiError::path_not_found());
            }
            let (name, sub) = match tail {
                [] => (None, None),
                [n] => (owned(n), None),
                [n, s] => (owned(n), owned(s)),
                _ => return Err(ApiError::path_not_found()),
            };
            Target {
                info,
                namespace: Some(ns.to_string()),
                name,
                subresource: sub,
            }
        }
        [plural, tail @ ..] => {
            let info = lookup(plural)?;
            let (name, sub) = match tail {
                [] => (None, None),
                [n] if !info.namespaced => (owned(n), None),
                [n, s] if !info.namespaced => (owned(n), owned(s)),
                _ => return Err(ApiError::path_not_found()),
            };
            Target {
                info,
                namespace: None,
                name,
                subresource: sub,
            }
        }
        _ => return Err(ApiError::path_not_found()),
    };
    if let Some(sub) = &target.subresource
        && !target.info.subresources.contains(&sub.as_str())
    {
        return Err(ApiError::path_not_found());
    }
    Ok(ApiPath::Resource(target))
}

/// Query parameters, decoded, and the user the request acts as (`None` for the apiserver's
/// own writes), which admission reads.
#[derive(Debug, Default, Clone)]
pub struct Params(
    pub HashMap<String, String>,
    pub Option<std::sync::Arc<crate::auth::UserInfo>>,
);

impl Params {
    pub fn parse(query: Option<&str>) -> Self {
        Params(
            form_urlencoded::parse(query.unwrap_or("").as_bytes())
                .into_owned()
                .collect(),
            None,
        )
    }

    /// The same parameters, for a request by `user`.
    pub fn by(mut self, user: std::sync::Arc<crate::auth::UserInfo>) -> Self {
        self.1 = Some(user);
        self
    }

    /// The user the request acts as.
    pub fn user(&self) -> Option<&crate::auth::UserInfo> {
        self.1.as_deref()
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .get(key)
            .map(String::as_str)
            .filter(|s| !s.is_empty())
    }

    pub fn flag(&self, key: &str) -> bool {
        matches!(self.get(key), Some("1" | "true" | "True"))
    }

    pub fn int(&self, key: &str) -> ApiResult<Option<i64>> {
        match self.get(key) {
            None => Ok(None),
            Some(s) => s.parse().map(Some).map_err(|_| {
                ApiError::bad_request(format!("invalid value for {key}: {s:?} is not an integer"))
            }),
        }
    }

    pub fn dry_run(&self) -> ApiResult<bool> {
        match self.get("dryRun") {
            None => Ok(false),
            Some("All") => Ok(true),
            Some(other) => Err(ApiError::bad_request(format!(
                "Invalid dry run value: {other:?}: supported values: \"All\""
            ))),
        }
    }

    /// `fieldValidation`: Ignore, Warn (the default) or Strict.
    pub fn field_validation(&self) -> ApiResult<FieldValidation> {
        match self.get("fieldValidation") {
            None | Some("Warn") => Ok(FieldValidation::Warn),
            Some("Ignore") => Ok(FieldValidation::Ignore),
            Some("Strict") => Ok(FieldValidation::Strict),
            Some(other) => Err(ApiError::bad_request(format!(
                "fieldValidation parameter unsupported: {other:?}; use Ignore, Warn or Strict"
            ))),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldValidation {
    Ignore,
    Warn,
    Strict,
}

/// How the client wants the response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Yaml,
    /// `application/json;as=Table;g=meta.k8s.io;v=v1` (or v1beta1).
    Table,
    /// `application/json;as=PartialObjectMetadata[List];g=meta.k8s.io;v=v1`.
    Metadata,
}

/// Picks the response format from the Accept header, in the client's order of preference.
pub fn negotiate(headers: &HeaderMap) -> ApiResult<Format> {
    let accept = headers
        .get(http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if accept.trim().is_empty() {
        return Ok(Format::Json);
    }
    for part in accept.split(',') {
        let mut fields = part.split(';').map(str::trim);
        let media = fields.next().unwrap_or("");
        let mut as_ = None;
        let mut group = None;
        for f in fields {
            if let Some((k, v)) = f.split_once('=') {
                match k.trim() {
                    "as" => as_ = Some(v.trim()),
                    "g" => group = Some(v.trim()),
                    _ => {}
                }
            }
        }
        let json_like = matches!(media, "application/json" | "*/*" | "application/*");
        match (as_, group) {
            (Some("Table"), Some("meta.k8s.io")) if json_like => return Ok(Format::Table),
            (Some("PartialObjectMetadata" | "PartialObjectMetadataList"), Some("meta.k8s.io"))
                if json_like =>
            {
                return Ok(Format::Metadata);
            }
            (Some(_), _) => continue,
            (None, _) => {}
        }
        match media {
            "application/json" | "*/*" | "application/*" | "application/json-patch+json" => {
                return Ok(Format::Json);
            }
            "application/yaml" => return Ok(Format::Yaml),
            _ => continue,
        }
    }
    Err(ApiError::not_acceptable(
        "only the following media types are accepted: application/json, application/yaml, application/json;as=Table;g=meta.k8s.io;v=v1",
    ))
}

/// The Content-Type's media type, lower-cased, without parameters.
pub fn content_type(headers: &HeaderMap) -> String {
    headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// Decodes a JSON, YAML or protobuf request body into an object. Protobuf bodies (kubectl
/// 1.32+'s typed creates) become the same JSON form a JSON client would have sent.
pub fn decode_body(headers: &HeaderMap, body: &Bytes) -> ApiResult<Value> {
    let ct = content_type(headers);
    let value: Value = match ct.as_str() {
        "application/yaml" | "application/apply-patch+yaml" => serde_yaml::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?,
        "application/json" | "" => serde_json::from_slice(body).map_err(|e| {
            ApiError::bad_request(format!(
                "the body of the request could not be decoded as JSON: {e}"
            ))
        })?,
        skiff_api::protobuf::CONTENT_TYPE => skiff_api::protobuf::decode(body)
            .map(|(_, _, obj)| obj)
            .map_err(|e| {
                ApiError::bad_request(format!(
                    "the protobuf body of the request could not be decoded: {e}"
                ))
            })?,
        other => return Err(ApiError::unsupported_media_type(other)),
    };
    if !value.is_object() {
        return Err(ApiError::bad_request(
            "the body of the request must be a JSON object",
        ));
    }
    Ok(value)
}
