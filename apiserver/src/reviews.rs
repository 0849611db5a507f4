//! The review resources: access reviews (`kubectl auth can-i`), rules reviews
//! (`kubectl auth can-i --list`), `SelfSubjectReview` (`kubectl auth whoami`) and
//! `TokenReview`. Each is created, answered from the authorizers or authenticators, and never
//! stored.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};
use skiff_api::ResourceInfo;

use crate::app::App;
use crate::auth::{Attributes, Decision, UserInfo};
use crate::error::{ApiError, ApiResult};

/// Answers a create of a review resource; returns the object to send back with 201.
pub fn answer(
    app: &App,
    info: &ResourceInfo,
    namespace: Option<&str>,
    user: &UserInfo,
    body: Value,
) -> ApiResult<Value> {
    let mut out = json!({
        "kind": info.kind,
        "apiVersion": info.api_version(),
        "metadata": { "creationTimestamp": null },
    });
    let spec = body.get("spec").cloned().unwrap_or_else(|| json!({}));
    let status = match info.plural {
        "selfsubjectreviews" => json!({ "userInfo": user_info(user) }),
        "tokenreviews" => token_review(app, &spec),
        "selfsubjectaccessreviews" => access_review(app, info, user, &spec, None)?,
        "subjectaccessreviews" => {
            let subject = subject_of(info, &spec)?;
            access_review(app, info, &subject, &spec, None)?
        }
        "localsubjectaccessreviews" => {
            let subject = subject_of(info, &spec)?;
            access_review(app, info, &subject, &spec, namespace)?
        }
        "selfsubjectrulesreviews" => rules_review(app, user, &spec),
        other => {
            return Err(ApiError::method_not_allowed(format!(
                "{other} cannot be created"
            )));
        }
    };
    if info.plural != "selfsubjectreviews" {
        out["spec"] = spec;
    }
    out["status"] = status;
    Ok(out)
}

/// A `UserInfo` as the authentication API writes it.
pub fn user_info(user: &UserInfo) -> Value {
    // Field order as authentication.k8s.io's UserInfo: username, uid, groups, extra.
    let mut u = serde_json::Map::new();
    u.insert("username".into(), json!(user.name));
    if !user.uid.is_empty() {
        u.insert("uid".into(), json!(user.uid));
    }
    u.insert("groups".into(), json!(user.groups));
    if !user.extra.is_empty() {
        u.insert("extra".into(), json!(user.extra));
    }
    Value::Object(u)
}

fn invalid(info: &ResourceInfo, field: &str, value: &Value, why: &str) -> ApiError {
    ApiError::invalid(
        info,
        "",
        &[skiff_api::FieldError::invalid(field, value, why)],
    )
}

/// The user a `SubjectAccessReview` asks about.
fn subject_of(info: &ResourceInfo, spec: &Value) -> ApiResult<UserInfo> {
    let strings = |v: Option<&Value>| -> Vec<String> {
        v.and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|x| x.as_str().map(String::from))
            .collect()
    };
    let name = spec.get("user").and_then(Value::as_str).unwrap_or_default();
    let groups = strings(spec.get("groups"));
    if name.is_empty() && groups.is_empty() {
        return Err(invalid(
            info,
            "spec.user",
            &json!(""),
            "at least one of user or group must be specified",
        ));
    }
    let extra: BTreeMap<String, Vec<String>> = spec
        .get("extra")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), strings(Some(v))))
                .collect()
        })
        .unwrap_or_default();
    Ok(UserInfo {
        name: name.to_string(),
        uid: spec
            .get("uid")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        groups,
        extra,
    })
}

fn access_review(
    app: &App,
    info: &ResourceInfo,
    user: &UserInfo,
    spec: &Value,
    local_namespace: Option<&str>,
) -> ApiResult<Value> {
    let s = |v: &Value, k: &str| -> String {
        v.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let (resource, non_resource) = (
        spec.get("resourceAttributes").filter(|v| v.is_object()),
        spec.get("nonResourceAttributes").filter(|v| v.is_object()),
    );
    let decision = match (resource, non_resource) {
        (Some(r), None) => {
            let (namespace, verb, group, version, res, sub, name) = (
                s(r, "namespace"),
                s(r, "verb"),
                s(r, "group"),
                s(r, "version"),
                s(r, "resource"),
                s(r, "subresource"),
                s(r, "name"),
            );
            if let Some(local) = local_namespace
                && namespace != local
            {
                return Err(invalid(
                    info,
                    "spec.resourceAttributes.namespace",
                    &json!(namespace),
                    "must match metadata.namespace",
                ));
            }
            let attrs = Attributes {
                verb: &verb,
                resource_request: true,
                group: &group,
                version: &version,
                resource: &res,
                subresource: Some(sub.as_str()).filter(|x| !x.is_empty()),
                namespace: Some(namespace.as_str()).filter(|x| !x.is_empty()),
                name: Some(name.as_str()).filter(|x| !x.is_empty()),
                path: "",
            };
            app.authz.authorize(user, &attrs)
        }
        (None, Some(n)) => {
            let (path, verb) = (s(n, "path"), s(n, "verb"));
            let attrs = Attributes {
                verb: &verb,
                path: &path,
                ..Default::default()
            };
            app.authz.authorize(user, &attrs)
        }
        _ => {
            return Err(invalid(
                info,
                "spec.resourceAttributes",
                &Value::Null,
                "exactly one of nonResourceAttributes or resourceAttributes must be specified",
            ));
        }
    };
    Ok(match decision {
        Decision::Allow => json!({ "allowed": true }),
        Decision::Deny(reason) => json!({ "allowed": false, "denied": true, "reason": reason }),
        Decision::NoOpinion(reason) if reason.is_empty() => json!({ "allowed": false }),
        Decision::NoOpinion(reason) => json!({ "allowed": false, "reason": reason }),
    })
}

fn rules_review(app: &App, user: &UserInfo, spec: &Value) -> Value {
    let namespace = spec
        .get("namespace")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let list = app.authz.rules_for(user, namespace);
    let mut resource_rules = Vec::new();
    let mut non_resource_rules = Vec::new();
    for r in list.rules {
        if r.resources.as_ref().is_some_and(|x| !x.is_empty()) {
            let mut rule = Map::new();
            rule.insert("verbs".into(), json!(r.verbs));
            rule.insert("apiGroups".into(), json!(r.api_groups.unwrap_or_default()));
            rule.insert("resources".into(), json!(r.resources));
            if let Some(names) = r.resource_names.filter(|n| !n.is_empty()) {
                rule.insert("resourceNames".into(), json!(names));
            }
            resource_rules.push(Value::Object(rule));
        }
        if let Some(urls) = r.non_resource_urls.filter(|u| !u.is_empty()) {
            non_resource_rules.push(json!({ "verbs": r.verbs, "nonResourceURLs": urls }));
        }
    }
    let mut status = json!({
        "resourceRules": resource_rules,
        "nonResourceRules": non_resource_rules,
        "incomplete": list.incomplete,
    });
    if !list.errors.is_empty() {
        status["evaluationError"] = json!(list.errors.join(", "));
    }
    status
}

fn token_review(app: &App, spec: &Value) -> Value {
    let token = spec
        .get("token")
        .and_then(Value::as_str)
        .unwrap_or_default();
    match app.authenticate_token(token) {
        Some(user) => json!({ "authenticated": true, "user": user_info(&user) }),
        None => json!({ "user": {} , "error": "[invalid bearer token]" }),
    }
}
