//! The HTTP front: one dispatcher that authenticates, authorizes, works out which resource a
//! path names and calls the registry; plus discovery, health, version and metrics.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::FutureExt;
use http::{Method, request::Parts};
use serde_json::{Value, json};
use skiff_api::{ResourceInfo, resources};

use crate::app::App;
use crate::apply;
use crate::auth::{Attributes, Authenticated, Decision, PeerIdentity, UserInfo};
use crate::discovery;
use crate::error::{ApiError, ApiResult};
use crate::metrics::{self, AuthResult, RequestKind};
use crate::objects;
use crate::registry::Written;
use crate::render::{self, respond, respond_json};
use crate::request::{self, ApiPath, Format, Params, Target};
use crate::watch;

/// Entry point for every request.
pub async fn dispatch(State(app): State<Arc<App>>, req: Request) -> Response {
    let started = std::time::Instant::now();
    let method = req.method().clone();
    let (parts, body) = req.into_parts();
    let mut audit = crate::audit::Record::start(app.audit.as_ref(), &parts);
    let body = audit.capture(body);
    // A bug in one request must not take the connection (or the process) down with it.
    // Set once the caller is authenticated (or needs not be): only then is the request counted.
    let mut kind = None;
    let result = std::panic::AssertUnwindSafe(handle(&app, &parts, body, &mut audit, &mut kind))
        .catch_unwind()
        .await;
    let result = result.unwrap_or_else(|panic| {
        audit.panicked(panic.as_ref());
        Err(ApiError::internal(
            "the server hit an internal error handling this request; see its log",
        ))
    });
    let resp = match result {
        Ok(r) => r,
        Err(e) => {
            if e.code >= 500 {
                tracing::error!(method = %method, path = %parts.uri.path(), error = %e, "request failed");
            }
            audit.failed(&e);
            let too_large = e.code == 413;
            let mut resp = e.into_response();
            // The rest of a refused body is never read: an HTTP/1.1 connection cannot carry
            // another request after it, so say it closes (or the client's next request on it
            // fails with an incomplete message).
            if too_large && parts.version <= http::Version::HTTP_11 {
                resp.headers_mut().insert(
                    http::header::CONNECTION,
                    http::HeaderValue::from_static("close"),
                );
            }
            resp
        }
    };
    let resp = audit.finish(resp).await;
    if let Some(kind) = kind {
        app.metrics
            .observe(&kind, resp.status().as_u16(), started.elapsed());
    }
    resp
}

/// The paths outside the resource tree that request metrics name (kube-apiserver labels a
/// non-resource request by its path); any other is labelled "" so that the label set stays
/// what the server routes, not what clients send.
const NON_RESOURCE_PATHS: &[&str] = &[
    "/api",
    "/apis",
    "/healthz",
    "/livez",
    "/readyz",
    "/version",
    "/metrics",
    "/openapi/v2",
    crate::serviceaccount::OPENID_CONFIG_PATH,
    crate::serviceaccount::JWKS_PATH,
];

/// What a request is, for its metrics, from the parsed request only (see [`RequestKind`]).
fn request_kind(parts: &Parts, target: Option<&Target>, verb: &str) -> RequestKind {
    let Some(t) = target else {
        let path = parts.uri.path();
        return RequestKind {
            verb: metrics::clean_verb(parts.method.as_str()),
            subresource: NON_RESOURCE_PATHS
                .iter()
                .find(|p| **p == path)
                .copied()
                .unwrap_or(""),
            ..RequestKind::default()
        };
    };
    let subresource = t
        .subresource
        .as_deref()
        .and_then(|sub| t.info.subresources.iter().find(|s| **s == sub).copied())
        .unwrap_or("");
    let apply = parts
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/apply-patch"));
    // The verbs kube-apiserver's routes are registered with: writes by HTTP method, reads and
    // the streaming subresources by what they do.
    let verb = match verb {
        "unknown" => metrics::OTHER_VERB,
        _ if matches!(subresource, "exec" | "attach" | "portforward" | "proxy") => "CONNECT",
        "create" => "POST",
        "update" => "PUT",
        "patch" if apply => "APPLY",
        v => metrics::clean_verb(v),
    };
    let scope = if t.namespace.is_some()
        || (t.info.plural == "namespaces" && t.info.group.is_empty() && t.name.is_some())
    {
        "namespace"
    } else if t.name.is_some() {
        "resource"
    } else {
        "cluster"
    };
    RequestKind {
        verb,
        group: t.info.group,
        version: t.info.version,
        resource: t.info.plural,
        subresource,
        scope,
    }
}

fn verb_of(method: &Method, target: Option<&Target>, params: &Params) -> &'static str {
    let named = target.is_some_and(|t| t.name.is_some());
    match *method {
        Method::GET if params.flag("watch") => "watch",
        Method::GET if named || target.is_none() => "get",
        Method::GET => "list",
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE if named => "delete",
        Method::DELETE => "deletecollection",
        _ => "unknown",
    }
}

/// What a resource request asks, for the authorizers. As kube-apiserver: a namespace's own
/// name is its namespace, and a list or watch narrowed to one name by
/// `fieldSelector=metadata.name=x` names it.
fn resource_attributes<'a>(
    t: &'a Target,
    verb: &'a str,
    params: &'a Params,
    path: &'a str,
) -> Attributes<'a> {
    let mut name = t.name.as_deref();
    if name.is_none() && matches!(verb, "list" | "watch") {
        name = params.get("fieldSelector").and_then(|sel| {
            sel.split(',').find_map(|term| {
                term.strip_prefix("metadata.name==")
                    .or_else(|| term.strip_prefix("metadata.name="))
            })
        });
    }
    let namespace = if t.info.plural == "namespaces" && t.info.group.is_empty() {
        t.name.as_deref()
    } else {
        t.namespace.as_deref()
    };
    Attributes {
        verb,
        resource_request: true,
        group: t.info.group,
        version: t.info.version,
        resource: t.info.plural,
        subresource: t.subresource.as_deref(),
        namespace,
        name,
        path,
    }
}

/// The body, up to kube-apiserver's `MaxRequestBodyBytes` (3 MiB), refused past it with
/// kube-apiserver's 413 and message.
async fn read_body(body: Body) -> ApiResult<Bytes> {
    axum::body::to_bytes(body, request::MAX_BODY)
        .await
        .map_err(|_| {
            ApiError::too_large(format!(
                "Request entity too large: limit is {}",
                request::MAX_BODY
            ))
        })
}

async fn handle(
    app: &Arc<App>,
    parts: &Parts,
    body: Body,
    audit: &mut crate::audit::Record,
    kind: &mut Option<RequestKind>,
) -> ApiResult<Response> {
    let path = parts.uri.path();
    // Health endpoints answer everyone, as load balancers and probes need them (and, when
    // audited, as the user their credentials name, if any).
    let health_path = matches!(path, "/healthz" | "/livez" | "/readyz");
    if health_path && app.audit.is_none() {
        *kind = Some(request_kind(parts, None, ""));
        return Ok(health(app, path).await);
    }
    let params = Params::parse(parts.uri.query());
    // The resource metrics API is served apart from the stored resources.
    let metrics_path = path
        .strip_prefix("/apis/metrics.k8s.io")
        .filter(|rest| rest.is_empty() || rest.starts_with('/'));
    // Parsed before authentication so that even a refused request's audit event says what it
    // asked for; a path naming no resource is still refused only once the caller is known.
    let parsed = if metrics_path.is_some() {
        None
    } else if path.starts_with("/api/") || path == "/api" || path.starts_with("/apis") {
        Some(request::parse_path(path))
    } else {
        None
    };
    let target = match &parsed {
        Some(Ok(ApiPath::Resource(t))) => Some(t),
        _ => None,
    };
    let verb = verb_of(&parts.method, target, &params);
    let attrs = match target {
        Some(t) => resource_attributes(t, verb, &params, path),
        None => Attributes {
            verb,
            path,
            ..Default::default()
        },
    };
    let peer = parts.extensions.get::<PeerIdentity>();
    let authenticated = app.authenticate(&parts.headers, peer);
    app.metrics.authenticated(match &authenticated {
        Authenticated::User(_) => AuthResult::Success,
        Authenticated::None if app.anonymous => AuthResult::Success,
        Authenticated::None => AuthResult::Failure,
        Authenticated::Invalid => AuthResult::Error,
    });
    let user = match authenticated {
        Authenticated::User(u) => u,
        Authenticated::None if app.anonymous => Arc::new(UserInfo::anonymous()),
        _ if health_path => Arc::new(UserInfo::anonymous()),
        Authenticated::None | Authenticated::Invalid => {
            let had_cert = peer.is_some_and(|p| p.0.is_some());
            audit.unauthenticated(&parts.headers, had_cert, &attrs);
            return Err(ApiError::unauthorized());
        }
    };
    *kind = Some(request_kind(parts, target, verb));
    audit.begin(&user, &attrs);
    if health_path {
        return Ok(health(app, path).await);
    }
    let acting = crate::impersonate::apply(app.authz.as_ref(), &parts.headers, user.clone())?;
    if !Arc::ptr_eq(&acting, &user) {
        audit.impersonated(&acting);
    }
    let user = acting;
    if let Some(Err(e)) = &parsed {
        return Err(e.clone());
    }
    let decision = app.authz.authorize(&user, &attrs);
    audit.authorized(&decision);
    match decision {
        Decision::Allow => {}
        Decision::Deny(reason) | Decision::NoOpinion(reason) => {
            return Err(ApiError::forbidden_request(&user.name, &attrs, &reason));
        }
    }
    let params = params.by(user.clone());
    let parsed = parsed.and_then(Result::ok);

    // Paths outside the API (`/version`, `/openapi/*`, ...) answer in their own formats:
    // kubectl asks for `/openapi/v2` in protobuf only, to validate a `kind: List`.
    if parsed.is_none() && metrics_path.is_none() {
        return other_path(app, parts, path).await;
    }
    let format = request::negotiate(&parts.headers)?;
    let json_fmt = if format == Format::Yaml {
        Format::Yaml
    } else {
        Format::Json
    };
    if let Some(rest) = metrics_path {
        return crate::resource_metrics::serve(app, &parts.method, rest, &params, json_fmt).await;
    }
    let Some(parsed) = parsed else {
        return other_path(app, parts, path).await;
    };
    match parsed {
        ApiPath::CoreVersions => Ok(respond(
            200,
            &discovery::api_versions(&app.advertise),
            json_fmt,
            &[],
        )),
        ApiPath::Groups => Ok(respond(200, &discovery::api_group_list(), json_fmt, &[])),
        ApiPath::Group(g) => discovery::api_group(g)
            .map(|d| respond(200, &d, json_fmt, &[]))
            .ok_or_else(ApiError::path_not_found),
        ApiPath::GroupVersion(g, v) => discovery::api_resource_list(g, v)
            .map(|d| respond(200, &d, json_fmt, &[]))
            .ok_or_else(ApiError::path_not_found),
        ApiPath::Resource(t) if !t.info.is_stored() => {
            if parts.method != Method::POST || t.name.is_some() || t.subresource.is_some() {
                return Err(ApiError::method_not_allowed(format!(
                    "the server does not allow this method on the requested resource ({})",
                    parts.method
                )));
            }
            let body = request::decode_body(&parts.headers, &read_body(body).await?)?;
            let out = crate::reviews::answer(app, t.info, t.namespace.as_deref(), &user, body)?;
            Ok(respond(201, &out, json_fmt, &[]))
        }
        ApiPath::Resource(t) => resource(app, parts, body, t, params, format).await,
    }
}

async fn health(app: &App, path: &str) -> Response {
    let ok = match path {
        "/readyz" => app.registry.store.current_revision().await.is_ok(),
        _ => true,
    };
    let (code, text) = if ok {
        (200, "ok")
    } else {
        (503, "storage is not reachable")
    };
    (
        http::StatusCode::from_u16(code).unwrap_or(http::StatusCode::OK),
        [(http::header::CONTENT_TYPE, "text/plain")],
        text,
    )
        .into_response()
}

async fn other_path(app: &App, parts: &Parts, path: &str) -> ApiResult<Response> {
    match (parts.method.clone(), path) {
        (Method::GET, "/version") => Ok(respond(200, &discovery::version(), Format::Json, &[])),
        (Method::GET, "/metrics") => Ok(app.metrics.render()),
        (
            Method::GET,
            crate::serviceaccount::OPENID_CONFIG_PATH | crate::serviceaccount::JWKS_PATH,
        ) => service_account_issuer(app, path),
        (Method::GET, p) if p == "/openapi/v2" || p.starts_with("/openapi/v3") => {
            crate::openapi::serve(p, &parts.headers)
        }
        _ => Err(ApiError::path_not_found()),
    }
}

/// The ServiceAccount issuer's OIDC discovery document and public keys, for systems that
/// verify Skiff's ServiceAccount tokens themselves.
fn service_account_issuer(app: &App, path: &str) -> ApiResult<Response> {
    use crate::serviceaccount::{self as sa, DISCOVERY_MAX_AGE_SECONDS};
    let tokens = app
        .sa_tokens
        .as_ref()
        .ok_or_else(ApiError::path_not_found)?;
    let (doc, content_type) = if path == sa::JWKS_PATH {
        (tokens.key.jwks(), sa::JWKS_CONTENT_TYPE)
    } else {
        let uri = sa::default_jwks_uri(&app.advertise);
        let doc = tokens
            .key
            .openid_configuration(&uri)
            .map_err(|_| ApiError::path_not_found())?;
        (doc, "application/json")
    };
    Ok((
        [
            (http::header::CONTENT_TYPE, content_type.to_string()),
            (
                http::header::CACHE_CONTROL,
                format!("public, max-age={DISCOVERY_MAX_AGE_SECONDS}"),
            ),
        ],
        doc.to_string(),
    )
        .into_response())
}

fn written(info: &ResourceInfo, w: Written, format: Format, params: &Params) -> Response {
    let object = match w.json {
        Some(json) if format == Format::Json => return respond_json(w.code, json, &w.warnings),
        Some(json) => serde_json::from_slice(&json).unwrap_or_default(),
        None => w.object,
    };
    let obj = render::object(info, object, format, params);
    respond(
        w.code,
        &obj,
        if format == Format::Yaml {
            Format::Yaml
        } else {
            Format::Json
        },
        &w.warnings,
    )
}

/// The field manager of a write: `?fieldManager=`, else the client's User-Agent up to the
/// first `/`, as Kubernetes defaults it.
fn field_manager(parts: &Parts, params: &Params) -> String {
    if let Some(m) = params.get("fieldManager") {
        return m.to_string();
    }
    parts
        .headers
        .get(http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .and_then(|ua| ua.split('/').next())
        .filter(|s| !s.is_empty())
        .unwrap_or("unknown")
        .to_string()
}

async fn resource(
    app: &Arc<App>,
    parts: &Parts,
    body: Body,
    t: Target,
    params: Params,
    format: Format,
) -> ApiResult<Response> {
    let info = t.info;
    let manager = field_manager(parts, &params);
    let reg = &app.registry;
    let ns = t.namespace.as_deref();
    let out_fmt = if format == Format::Yaml {
        Format::Yaml
    } else {
        Format::Json
    };
    match (&parts.method, t.name.as_deref(), t.subresource.as_deref()) {
        (&Method::GET, None, None) if params.flag("watch") => {
            watch::serve(reg.clone(), info, t.namespace.clone(), None, params, format).await
        }
        (&Method::GET, None, None) => {
            let page = reg.list(info, ns, &params).await?;
            Ok(respond(
                200,
                &render::list(info, page, format, &params),
                out_fmt,
                &[],
            ))
        }
        (&Method::GET, Some(name), None) if params.flag("watch") => {
            watch::serve(
                reg.clone(),
                info,
                t.namespace.clone(),
                Some(name.to_string()),
                params,
                format,
            )
            .await
        }
        (&Method::GET, Some(name), None | Some("status" | "approval")) => {
            let obj = reg.get(info, ns, name, &params).await?;
            Ok(respond(
                200,
                &render::object(info, obj, format, &params),
                out_fmt,
                &[],
            ))
        }
        (&Method::GET, Some(name), Some("scale")) => {
            let obj = reg.get(info, ns, name, &params).await?;
            Ok(respond(200, &to_scale(&obj), out_fmt, &[]))
        }
        // Served by the pod's kubelet, through the apiserver (`proxy`).
        (_, Some(name), Some(sub @ ("log" | "exec"))) => {
            // Boxed: the websocket client makes this future about 10 KB, and every request's
            // future (copied a few times on its way to the runtime) would otherwise be as big.
            Box::pin(crate::proxy::serve(
                app,
                parts,
                ns.unwrap_or("default"),
                name,
                sub,
                &params,
            ))
            .await
        }
        (&Method::POST, None, None) => {
            let body = request::decode_body(&parts.headers, &read_body(body).await?)?;
            let w = reg.create(info, ns, body, &params, Some(&manager)).await?;
            Ok(written(info, w, format, &params))
        }
        (&Method::POST, Some(name), Some("binding")) => {
            let body = request::decode_body(&parts.headers, &read_body(body).await?)?;
            bind(app, ns, name, body, &params).await
        }
        (&Method::POST, Some(name), Some("token")) if info.plural == "serviceaccounts" => {
            let body = request::decode_body(&parts.headers, &read_body(body).await?)?;
            let (out, warnings) = crate::sa_tokens::request(
                app,
                params.user(),
                ns.unwrap_or("default"),
                name,
                &body,
            )?;
            Ok(respond(201, &out, out_fmt, &warnings))
        }
        (&Method::POST, Some(name), Some("eviction")) => {
            let body = request::decode_body(&parts.headers, &read_body(body).await?)?;
            let (code, status) =
                crate::eviction::evict(reg, ns.unwrap_or("default"), name, &body, &params).await?;
            Ok(respond(code, &status, Format::Json, &[]))
        }
        (&Method::PUT, Some(name), sub @ (None | Some("status" | "approval"))) => {
            let body = request::decode_body(&parts.headers, &read_body(body).await?)?;
            let w = reg
                .update(info, ns, name, sub, body, &params, &manager)
                .await?;
            Ok(written(info, w, format, &params))
        }
        (&Method::PUT, Some(name), Some("finalize")) => {
            let body = request::decode_body(&parts.headers, &read_body(body).await?)?;
            let finalizers = body
                .pointer("/spec/finalizers")
                .cloned()
                .unwrap_or(json!([]));
            let obj = reg
                .guaranteed_update(
                    info,
                    ns,
                    name,
                    |mut cur| {
                        cur["spec"]["finalizers"] = finalizers.clone();
                        Ok(Some(cur))
                    },
                    params.dry_run()?,
                )
                .await?;
            Ok(respond(200, &obj, out_fmt, &[]))
        }
        (&Method::PUT, Some(name), Some("scale")) => {
            let body = request::decode_body(&parts.headers, &read_body(body).await?)?;
            scale(app, info, ns, name, &params, &manager, |_| Ok(body.clone())).await
        }
        (&Method::PATCH, Some(name), sub) => {
            let raw = read_body(body).await?;
            let ct = request::content_type(&parts.headers);
            patch(
                app, info, ns, name, sub, &ct, &raw, &params, format, &manager,
            )
            .await
        }
        (&Method::DELETE, Some(name), None) => {
            let raw = read_body(body).await?;
            let opts = if raw.iter().all(u8::is_ascii_whitespace) {
                json!({})
            } else {
                serde_json::from_slice(&raw)
                    .map_err(|e| ApiError::bad_request(format!("invalid DeleteOptions: {e}")))?
            };
            let w = reg.delete(info, ns, name, &opts, &params).await?;
            Ok(written(info, w, format, &params))
        }
        (&Method::DELETE, None, None) => {
            let raw = read_body(body).await?;
            let opts = if raw.iter().all(u8::is_ascii_whitespace) {
                json!({})
            } else {
                serde_json::from_slice(&raw).unwrap_or(json!({}))
            };
            let list = reg.delete_collection(info, ns, &opts, &params).await?;
            Ok(respond(200, &list, out_fmt, &[]))
        }
        (m, _, _) => Err(ApiError::method_not_allowed(format!(
            "the server does not allow this method on the requested resource ({m})"
        ))),
    }
}

/// A label selector in its string form, from a Deployment-style or RC-style selector.
fn selector_string(sel: Option<&Value>) -> String {
    let Some(sel) = sel else { return String::new() };
    let mut parts = Vec::new();
    let labels = sel
        .get("matchLabels")
        .or(if sel.get("matchExpressions").is_none() {
            Some(sel)
        } else {
            None
        });
    if let Some(m) = labels.and_then(Value::as_object) {
        for (k, v) in m {
            parts.push(format!("{k}={}", v.as_str().unwrap_or_default()));
        }
    }
    for e in sel
        .get("matchExpressions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let key = e.get("key").and_then(Value::as_str).unwrap_or_default();
        let vals: Vec<&str> = e
            .get("values")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        match e
            .get("operator")
            .and_then(Value::as_str)
            .unwrap_or_default()
        {
            "In" => parts.push(format!("{key} in ({})", vals.join(","))),
            "NotIn" => parts.push(format!("{key} notin ({})", vals.join(","))),
            "Exists" => parts.push(key.to_string()),
            "DoesNotExist" => parts.push(format!("!{key}")),
            _ => {}
        }
    }
    parts.join(",")
}

/// The `autoscaling/v1` Scale view of a scalable object.
fn to_scale(obj: &Value) -> Value {
    let meta = obj.get("metadata").cloned().unwrap_or(json!({}));
    let mut m = json!({});
    for f in [
        "name",
        "namespace",
        "uid",
        "resourceVersion",
        "creationTimestamp",
    ] {
        if let Some(v) = meta.get(f) {
            m[f] = v.clone();
        }
    }
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": m,
        "spec": { "replicas": obj.pointer("/spec/replicas").cloned().unwrap_or(json!(0)) },
        "status": {
            "replicas": obj.pointer("/status/replicas").cloned().unwrap_or(json!(0)),
            "selector": selector_string(obj.pointer("/spec/selector")),
        },
    })
}

/// Sets `spec.replicas` from a Scale that `f` derives from the current one.
async fn scale(
    app: &Arc<App>,
    info: &'static ResourceInfo,
    ns: Option<&str>,
    name: &str,
    params: &Params,
    manager: &str,
    f: impl Fn(Value) -> ApiResult<Value>,
) -> ApiResult<Response> {
    let obj = app
        .registry
        .guaranteed_update(
            info,
            ns,
            name,
            |cur| {
                let new_scale = f(to_scale(&cur))?;
                let replicas = new_scale
                    .pointer("/spec/replicas")
                    .and_then(Value::as_i64)
                    .unwrap_or(0);
                if replicas < 0 {
                    return Err(ApiError::invalid(
                        info,
                        name,
                        &[skiff_api::FieldError {
                            kind: skiff_api::FieldErrorKind::Invalid,
                            field: "spec.replicas".into(),
                            value: Some(replicas.to_string()),
                            detail: "must be greater than or equal to 0".into(),
                        }],
                    ));
                }
                let mut new = cur.clone();
                new["spec"]["replicas"] = json!(replicas);
                if let Some(rv) = new_scale
                    .pointer("/metadata/resourceVersion")
                    .filter(|v| v.as_str().is_some_and(|s| !s.is_empty()))
                {
                    new["metadata"]["resourceVersion"] = rv.clone();
                }
                let mut warnings = Vec::new();
                let new = app.registry.prepare_update(
                    info,
                    None,
                    new,
                    &cur,
                    request::FieldValidation::Ignore,
                    params.user(),
                    &mut warnings,
                )?;
                Ok(new.map(|mut n| {
                    apply::track_update(
                        Some(&cur),
                        &mut n,
                        manager,
                        &info.api_version(),
                        Some("scale"),
                    );
                    n
                }))
            },
            params.dry_run()?,
        )
        .await?;
    Ok(respond(200, &to_scale(&obj), Format::Json, &[]))
}

fn apply_patch(info: &ResourceInfo, ct: &str, current: &Value, patch: &Value) -> ApiResult<Value> {
    let rejected = |msg: String| ApiError::new(422, "Invalid", msg);
    match ct {
        "application/json-patch+json" => {
            let p: json_patch::Patch = serde_json::from_value(patch.clone())
                .map_err(|e| ApiError::bad_request(format!("invalid JSON patch: {e}")))?;
            let mut doc = current.clone();
            json_patch::patch(&mut doc, &p)
                .map_err(|e| rejected(format!("the JSON patch could not be applied: {e}")))?;
            // An operation on the root ("path": "") can replace the object with any value;
            // kube-apiserver fails to decode the result and answers Invalid.
            if !doc.is_object() {
                return Err(rejected(format!(
                    "\"\" is invalid: patch: Invalid value: {:?}: the patched object is not a JSON object",
                    doc.to_string()
                )));
            }
            Ok(doc)
        }
        "application/merge-patch+json" => {
            if !patch.is_object() {
                return Err(ApiError::bad_request("a merge patch must be a JSON object"));
            }
            let mut doc = current.clone();
            json_patch::merge(&mut doc, patch);
            Ok(doc)
        }
        "application/strategic-merge-patch+json" => {
            if !patch.is_object() {
                return Err(ApiError::bad_request(
                    "a strategic merge patch must be a JSON object",
                ));
            }
            skiff_api::patch::strategic_merge(info, current, patch).map_err(|e| {
                rejected(format!(
                    "the strategic merge patch could not be applied: {e}"
                ))
            })
        }
        other => Err(ApiError::unsupported_media_type(other)),
    }
}

async fn patch(
    app: &Arc<App>,
    info: &'static ResourceInfo,
    ns: Option<&str>,
    name: &str,
    sub: Option<&str>,
    ct: &str,
    raw: &Bytes,
    params: &Params,
    format: Format,
    manager: &str,
) -> ApiResult<Response> {
    if ct == "application/apply-patch+yaml" {
        return server_side_apply(app, info, ns, name, raw, params, format).await;
    }
    let patch: Value = serde_json::from_slice(raw).map_err(|e| {
        ApiError::bad_request(format!("the patch could not be decoded as JSON: {e}"))
    })?;
    if sub == Some("scale") {
        return scale(app, info, ns, name, params, manager, |s| {
            apply_patch(info, ct, &s, &patch)
        })
        .await;
    }
    if !matches!(sub, None | Some("status" | "approval")) {
        return Err(ApiError::method_not_allowed(
            "PATCH is not supported on this subresource",
        ));
    }
    let fv = params.field_validation()?;
    let mut warnings = Vec::new();
    let obj = app
        .registry
        .guaranteed_update(
            info,
            ns,
            name,
            |cur| {
                let patched = apply_patch(info, ct, &cur, &patch)?;
                let new = app.registry.prepare_update(
                    info,
                    sub,
                    patched,
                    &cur,
                    fv,
                    params.user(),
                    &mut warnings,
                )?;
                Ok(new.map(|mut n| {
                    apply::track_update(Some(&cur), &mut n, manager, &info.api_version(), sub);
                    n
                }))
            },
            params.dry_run()?,
        )
        .await?;
    Ok(written(
        info,
        Written {
            code: 200,
            object: obj,
            warnings,
            json: None,
        },
        format,
        params,
    ))
}

/// The applied configuration's own fields, without identity and server-owned metadata.
fn applied_fields(applied: &Value) -> Value {
    let mut v = applied.clone();
    if let Some(m) = v.as_object_mut() {
        m.remove("apiVersion");
        m.remove("kind");
    }
    if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        for f in [
            "name",
            "namespace",
            "managedFields",
            "resourceVersion",
            "uid",
            "creationTimestamp",
        ] {
            meta.remove(f);
        }
        if meta.is_empty() {
            v.as_object_mut().map(|m| m.remove("metadata"));
        }
    }
    apply::field_set(&v)
}

async fn server_side_apply(
    app: &Arc<App>,
    info: &'static ResourceInfo,
    ns: Option<&str>,
    name: &str,
    raw: &Bytes,
    params: &Params,
    format: Format,
) -> ApiResult<Response> {
    let manager = params
        .get("fieldManager")
        .ok_or_else(|| ApiError::new(422, "Invalid", "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch"))?
        .to_string();
    let mut applied: Value = serde_yaml::from_slice(raw)
        .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?;
    if !applied.is_object() {
        return Err(ApiError::bad_request(
            "the applied configuration must be an object",
        ));
    }
    for f in ["apiVersion", "kind"] {
        if applied
            .get(f)
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            return Err(ApiError::bad_request(format!(
                "{f} must be set in an applied configuration"
            )));
        }
    }
    match objects::name(&applied) {
        Some(n) if n != name => {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({n}) does not match the name on the URL ({name})"
            )));
        }
        _ => {
            objects::meta_mut(&mut applied).insert("name".into(), json!(name));
        }
    }
    let fields = applied_fields(&applied);
    let applied_set = apply::leaves(&fields);
    let force = params.flag("force");
    let api_version = info.api_version();
    let fv = params.field_validation()?;
    let exists = match app.registry.get(info, ns, name, &Params::default()).await {
        Ok(_) => true,
        Err(e) if e.code == 404 => false,
        Err(e) => return Err(e),
    };
    if !exists {
        let mut obj = applied.clone();
        apply::record(&mut obj, &manager, &api_version, fields);
        let w = app.registry.create(info, ns, obj, params, None).await?;
        return Ok(written(info, w, format, params));
    }
    let mut warnings = Vec::new();
    let obj = app
        .registry
        .guaranteed_update(
            info,
            ns,
            name,
            |cur| {
                let found = apply::conflicts(&cur, &applied, &applied_set, &manager);
                if !found.is_empty() && !force {
                    return Err(apply_conflict(info, name, &found));
                }
                let mut merged = cur.clone();
                if let Some(prev) = apply::previous(&cur, &manager) {
                    let removal = apply::removal_patch(&prev, &fields);
                    merged = skiff_api::patch::strategic_merge(info, &merged, &removal)
                        .map_err(ApiError::bad_request)?;
                }
                merged = skiff_api::patch::strategic_merge(info, &merged, &applied)
                    .map_err(ApiError::bad_request)?;
                apply::take_ownership(&mut merged, &found);
                apply::record(&mut merged, &manager, &api_version, fields.clone());
                // The applied configuration does not pin a version unless it says so.
                if applied.pointer("/metadata/resourceVersion").is_none() {
                    objects::meta_mut(&mut merged).remove("resourceVersion");
                }
                let new = app.registry.prepare_update(
                    info,
                    None,
                    merged,
                    &cur,
                    fv,
                    params.user(),
                    &mut warnings,
                )?;
                // A re-apply that changes nothing but the timestamp is no change.
                Ok(new.filter(|n| strip_times(n) != strip_times(&cur)))
            },
            params.dry_run()?,
        )
        .await?;
    Ok(written(
        info,
        Written {
            code: 200,
            object: obj,
            warnings,
            json: None,
        },
        format,
        params,
    ))
}

/// 409 Conflict naming each field another manager owns, as Kubernetes words it.
fn apply_conflict(info: &ResourceInfo, name: &str, found: &[apply::Conflict]) -> ApiError {
    let n = found.len();
    let lines: Vec<String> = found
        .iter()
        .map(|c| {
            format!(
                "conflict with \"{}\" using {}: {}",
                c.manager,
                c.api_version,
                apply::display_path(&c.path)
            )
        })
        .collect();
    let message = if n == 1 {
        format!("Apply failed with 1 conflict: {}", lines[0])
    } else {
        format!("Apply failed with {n} conflicts: {}", lines.join("\n"))
    };
    let causes: Vec<Value> = found
        .iter()
        .map(|c| {
            json!({
                "reason": "FieldManagerConflict",
                "message": format!("conflict with \"{}\" using {}", c.manager, c.api_version),
                "field": apply::display_path(&c.path),
            })
        })
        .collect();
    let mut e = ApiError::new(409, "Conflict", message);
    let mut d = json!({ "name": name, "kind": info.plural, "causes": causes });
    if !info.group.is_empty() {
        d["group"] = json!(info.group);
    }
    e.details = Some(d);
    e
}

fn strip_times(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(mf) = v
        .pointer_mut("/metadata/managedFields")
        .and_then(Value::as_array_mut)
    {
        for e in mf {
            if let Some(m) = e.as_object_mut() {
                m.remove("time");
            }
        }
    }
    if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("resourceVersion");
    }
    v
}

/// `POST pods/<name>/binding`: assigns a pod to a node, once.
async fn bind(
    app: &Arc<App>,
    ns: Option<&str>,
    name: &str,
    body: Value,
    params: &Params,
) -> ApiResult<Response> {
    let info = resources::find("", "v1", "pods")
        .ok_or_else(|| ApiError::internal("pods are not served"))?;
    let node = body
        .pointer("/target/name")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| {
            ApiError::invalid(
                info,
                name,
                &[skiff_api::FieldError {
                    kind: skiff_api::FieldErrorKind::Required,
                    field: "target.name".into(),
                    value: None,
                    detail: "".into(),
                }],
            )
        })?
        .to_string();
    app.registry
        .guaranteed_update(info, ns, name, |mut pod| {
            if objects::is_deleting(&pod) {
                return Err(ApiError::conflict(info, name, "pod is being deleted, cannot be assigned to a host"));
            }
            if let Some(existing) = pod.pointer("/spec/nodeName").and_then(Value::as_str).filter(|s| !s.is_empty()) {
                return Err(ApiError::conflict(info, name, &format!("pod {name} is already assigned to node \"{existing}\"")));
            }
            pod["spec"]["nodeName"] = json!(node);
            let cond = json!({ "type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": skiff_common::time::now() });
            let conds = pod["status"]["conditions"].as_array().cloned().unwrap_or_default();
            let mut conds: Vec<Value> = conds.into_iter().filter(|c| c.get("type").and_then(Value::as_str) != Some("PodScheduled")).collect();
            conds.push(cond);
            pod["status"]["conditions"] = json!(conds);
            Ok(Some(pod))
        }, params.dry_run()?)
        .await?;
    Ok(respond(201, &render::success(201), Format::Json, &[]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use skiff_api::selectors::LabelSelector;

    #[test]
    fn selector_strings() {
        assert_eq!(selector_string(Some(&json!({"app": "x"}))), "app=x");
        assert_eq!(
            selector_string(Some(
                &json!({"matchLabels": {"a": "b"}, "matchExpressions": [{"key": "t", "operator": "In", "values": ["1", "2"]}]})
            )),
            "a=b,t in (1,2)"
        );
        // The result must parse as a selector.
        assert!(LabelSelector::parse("a=b,t in (1,2)").is_ok());
    }

    #[test]
    fn request_kinds_come_from_fixed_sets() {
        let kind = |method: &str, uri: &str, content_type: &str| {
            let mut req = http::Request::builder().method(method).uri(uri);
            if !content_type.is_empty() {
                req = req.header(http::header::CONTENT_TYPE, content_type);
            }
            let (parts, ()) = req.body(()).unwrap().into_parts();
            let params = Params::parse(parts.uri.query());
            let parsed = request::parse_path(parts.uri.path());
            let target = match &parsed {
                Ok(ApiPath::Resource(t)) => Some(t),
                _ => None,
            };
            let verb = verb_of(&parts.method, target, &params);
            let k = request_kind(&parts, target, verb);
            (k.verb, k.resource, k.subresource, k.scope)
        };
        let pods = "/api/v1/namespaces/default/pods";
        assert_eq!(kind("GET", pods, ""), ("LIST", "pods", "", "namespace"));
        assert_eq!(
            kind("GET", &format!("{pods}?watch=true"), ""),
            ("WATCH", "pods", "", "namespace")
        );
        assert_eq!(kind("POST", pods, ""), ("POST", "pods", "", "namespace"));
        assert_eq!(
            kind(
                "PATCH",
                &format!("{pods}/p"),
                "application/apply-patch+yaml"
            ),
            ("APPLY", "pods", "", "namespace")
        );
        assert_eq!(
            kind("POST", &format!("{pods}/p/exec"), ""),
            ("CONNECT", "pods", "exec", "namespace")
        );
        assert_eq!(
            kind("GET", "/api/v1/nodes/n1", ""),
            ("GET", "nodes", "", "resource")
        );
        assert_eq!(
            kind("GET", "/api/v1/nodes", ""),
            ("LIST", "nodes", "", "cluster")
        );
        assert_eq!(
            kind("GET", "/api/v1/namespaces/kube-system", ""),
            ("GET", "namespaces", "", "namespace")
        );
        // Made-up methods, resources and paths all land on the same few values.
        assert_eq!(kind("BREW", pods, ""), ("other", "pods", "", "namespace"));
        assert_eq!(kind("BREW", "/no/such/path", ""), ("other", "", "", ""));
        assert_eq!(
            kind("GET", "/api/v1/namespaces/default/teapots", ""),
            ("GET", "", "", "")
        );
        assert_eq!(kind("GET", "/healthz", ""), ("GET", "", "/healthz", ""));
        assert_eq!(kind("HEAD", "/version", ""), ("GET", "", "/version", ""));
    }
}
