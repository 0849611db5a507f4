//! Who may call the kubelet's server, and for what: the kubelet's
//! `--anonymous-auth=false --authentication-token-webhook --authorization-mode=Webhook`.
//!
//! A caller is a verified client certificate's user (CN the name, each O a group) or the
//! user a TokenReview finds behind its `Authorization: Bearer` token; a caller with neither is
//! turned away with 401. Every request but `/healthz` is then put to the apiserver as a
//! SubjectAccessReview on a subresource of this Node (`nodes/proxy`, `nodes/stats`, ...), and
//! refused with 403 unless allowed. Both answers are cached for as long as the kubelet's
//! webhooks cache them, so a busy caller costs the apiserver one review every few minutes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use k8s_openapi::api::authorization::v1::ResourceAttributes;
use rustls::pki_types::CertificateDer;
use tokio::time::Instant;

use crate::api::{ApiError, ReviewApi, UserInfo, access_review_spec};

/// How long a token the apiserver vouched for is trusted without asking again
/// (`--authentication-token-webhook-cache-ttl`).
pub const TOKEN_TTL: Duration = Duration::from_secs(2 * 60);
/// How long a token the apiserver refused stays refused.
pub const TOKEN_FAILURE_TTL: Duration = Duration::from_secs(30);
/// How long an allowed access stays allowed (`--authorization-webhook-cache-authorized-ttl`).
pub const AUTHORIZED_TTL: Duration = Duration::from_secs(5 * 60);
/// How long a denied access stays denied (`--authorization-webhook-cache-unauthorized-ttl`).
pub const UNAUTHORIZED_TTL: Duration = Duration::from_secs(30);

/// The group every authenticated user is in.
const AUTHENTICATED: &str = "system:authenticated";

/// The one path anyone may ask for: the node's liveness, which says nothing about its pods.
pub const HEALTHZ: &str = "/healthz";

/// How many answers each cache holds at most. A caller making up tokens must not grow the
/// kubelet without bound; past this the expired answers go, then all of them.
const CACHE_CAPACITY: usize = 4096;

/// The user a connection's client certificate names, if it presented one the cluster CA
/// signed (the TLS layer checked the signature); every request of the connection carries it.
#[derive(Debug, Clone, Default)]
pub struct ClientCert(pub Option<Arc<UserInfo>>);

impl ClientCert {
    /// The user of the leaf of a verified certificate chain.
    pub fn from_chain(chain: Option<&[CertificateDer<'static>]>) -> ClientCert {
        ClientCert(
            chain
                .and_then(|c| c.first())
                .and_then(|leaf| user_from_cert(leaf))
                .map(Arc::new),
        )
    }
}

/// The user a client certificate names: CN is the name, each O a group. `None` without a CN,
/// which names no one.
pub fn user_from_cert(der: &[u8]) -> Option<UserInfo> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let subject = cert.subject();
    let username = subject.iter_common_name().next()?.as_str().ok()?;
    if username.is_empty() {
        return None;
    }
    Some(UserInfo {
        username: username.to_string(),
        groups: subject
            .iter_organization()
            .filter_map(|o| o.as_str().ok().map(String::from))
            .collect(),
        ..UserInfo::default()
    })
}

/// The bearer token of a request: `Authorization: Bearer <token>`, the scheme in any case.
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let mut parts = value.split(' ');
    let scheme = parts.next()?;
    let token = parts.next()?;
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// The API verb a request is authorized as: from its HTTP method alone, as the kubelet does.
/// An upgrade (WebSocket exec) is a GET and so a `get`; an unknown method has no verb, which no
/// role grants.
pub fn verb(method: &Method) -> &'static str {
    match *method {
        Method::GET => "get",
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE => "delete",
        _ => "",
    }
}

/// Whether `path` is `prefix` or below it (`/stats` and `/stats/summary`, not `/statsx`).
fn is_subpath(path: &str, prefix: &str) -> bool {
    path.strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// The subresource of `nodes` a request to `path` needs: a few read-only kinds of data each
/// have their own, so that monitoring can be granted them alone; everything else (pods, logs
/// of containers, exec, attach, port forwarding) is `proxy`.
pub fn subresource(path: &str) -> &'static str {
    const SPECIFIC: [(&str, &str); 5] = [
        ("/stats", "stats"),
        ("/metrics", "metrics"),
        ("/logs", "log"),
        ("/spec", "spec"),
        ("/checkpoint", "checkpoint"),
    ];
    SPECIFIC
        .iter()
        .find(|(prefix, _)| is_subpath(path, prefix))
        .map_or("proxy", |(_, sub)| sub)
}

/// What a request to this node's server asks to do, as an access review puts it.
pub fn attributes(node_name: &str, method: &Method, path: &str) -> ResourceAttributes {
    ResourceAttributes {
        verb: Some(verb(method).into()),
        version: Some("v1".into()),
        resource: Some("nodes".into()),
        subresource: Some(subresource(path).into()),
        name: Some(node_name.into()),
        ..ResourceAttributes::default()
    }
}

/// Answers kept until they expire (on the tokio clock, so that tests can move it).
struct TtlCache<V> {
    entries: Mutex<HashMap<String, (Instant, V)>>,
}

impl<V: Clone> TtlCache<V> {
    fn new() -> Self {
        TtlCache {
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn get(&self, key: &str) -> Option<V> {
        let mut entries = self.entries.lock().expect("auth cache poisoned");
        match entries.get(key) {
            Some((expires, value)) if *expires > Instant::now() => Some(value.clone()),
            Some(_) => {
                entries.remove(key);
                None
            }
            None => None,
        }
    }

    fn insert(&self, key: String, value: V, ttl: Duration) {
        let now = Instant::now();
        let mut entries = self.entries.lock().expect("auth cache poisoned");
        if entries.len() >= CACHE_CAPACITY {
            entries.retain(|_, (expires, _)| *expires > now);
            if entries.len() >= CACHE_CAPACITY {
                entries.clear();
            }
        }
        entries.insert(key, (now + ttl, value));
    }
}

/// Why a request was turned away.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// No credentials, or none the apiserver vouches for: 401.
    Unauthorized,
    /// The apiserver says the caller may not: 403.
    Forbidden {
        user: String,
        verb: String,
        subresource: String,
    },
    /// The access review could not be made (the apiserver is unreachable): 500, and the
    /// caller may try again.
    AuthorizationError {
        user: String,
        verb: String,
        subresource: String,
    },
}

impl IntoResponse for Refusal {
    /// The kubelet's plain-text answers, word for word: callers (and the apiserver relaying
    /// them in `kubectl logs` errors) show them as they are.
    fn into_response(self) -> Response {
        let (code, body) = match self {
            Refusal::Unauthorized => (StatusCode::UNAUTHORIZED, "Unauthorized".to_string()),
            Refusal::Forbidden {
                user,
                verb,
                subresource,
            } => (
                StatusCode::FORBIDDEN,
                format!(
                    "Forbidden (user={user}, verb={verb}, resource=nodes, subresource(s)=[{subresource}])\n"
                ),
            ),
            Refusal::AuthorizationError {
                user,
                verb,
                subresource,
            } => (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!(
                    "Authorization error (user={user}, verb={verb}, resource=nodes, subresource={subresource})"
                ),
            ),
        };
        let mut r = (code, body).into_response();
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        r
    }
}

/// The kubelet server's authenticator and authorizer, with their caches.
pub struct Auth {
    reviews: Arc<dyn ReviewApi>,
    node_name: String,
    /// Token → the user it belongs to, or `None` if it belongs to no one. Tokens are kept as
    /// they came, in memory only, for at most [`TOKEN_TTL`].
    tokens: TtlCache<Option<UserInfo>>,
    /// The access review's spec (JSON) → whether it was allowed.
    decisions: TtlCache<bool>,
}

impl Auth {
    /// Authenticates and authorizes through `reviews`, for the Node `node_name`.
    pub fn new(reviews: Arc<dyn ReviewApi>, node_name: &str) -> Auth {
        Auth {
            reviews,
            node_name: node_name.to_string(),
            tokens: TtlCache::new(),
            decisions: TtlCache::new(),
        }
    }

    /// Who makes a request: the certificate's user, else the bearer token's; `None` if
    /// neither names anyone. Every user is in `system:authenticated`.
    pub async fn authenticate(&self, cert: &ClientCert, headers: &HeaderMap) -> Option<UserInfo> {
        let mut user = match (&cert.0, bearer_token(headers)) {
            (Some(user), _) => UserInfo::clone(user),
            (None, Some(token)) => self.review_token(token).await?,
            (None, None) => return None,
        };
        if !user.groups.iter().any(|g| g == AUTHENTICATED) {
            user.groups.push(AUTHENTICATED.into());
        }
        Some(user)
    }

    async fn review_token(&self, token: &str) -> Option<UserInfo> {
        if let Some(answer) = self.tokens.get(token) {
            return answer;
        }
        match self.reviews.token_review(token).await {
            Ok(answer) => {
                let ttl = if answer.is_some() {
                    TOKEN_TTL
                } else {
                    TOKEN_FAILURE_TTL
                };
                self.tokens.insert(token.to_string(), answer.clone(), ttl);
                answer
            }
            // Not cached: the next request asks again, and the apiserver may be back.
            Err(e) => {
                tracing::warn!(error = %e, "cannot review a bearer token with the apiserver; answering 401");
                None
            }
        }
    }

    /// Whether `user` may do `attributes`, from the cache or an access review.
    pub async fn authorize(
        &self,
        user: &UserInfo,
        attributes: &ResourceAttributes,
    ) -> Result<bool, ApiError> {
        let key = serde_json::to_string(&access_review_spec(user, attributes))
            .expect("an access review spec serializes");
        if let Some(allowed) = self.decisions.get(&key) {
            return Ok(allowed);
        }
        let allowed = self.reviews.access_review(user, attributes).await?;
        let ttl = if allowed {
            AUTHORIZED_TTL
        } else {
            UNAUTHORIZED_TTL
        };
        self.decisions.insert(key, allowed, ttl);
        Ok(allowed)
    }

    /// Authenticates and authorizes one request; returns its user, or why it is refused.
    pub async fn check(
        &self,
        cert: &ClientCert,
        method: &Method,
        path: &str,
        headers: &HeaderMap,
    ) -> Result<UserInfo, Refusal> {
        let user = self
            .authenticate(cert, headers)
            .await
            .ok_or(Refusal::Unauthorized)?;
        let attributes = attributes(&self.node_name, method, path);
        let (verb, sub) = (verb(method), subresource(path));
        match self.authorize(&user, &attributes).await {
            Ok(true) => Ok(user),
            Ok(false) => {
                tracing::debug!(user = %user.username, verb, subresource = sub, path, "forbidden");
                Err(Refusal::Forbidden {
                    user: user.username,
                    verb: verb.into(),
                    subresource: sub.into(),
                })
            }
            Err(e) => {
                tracing::warn!(user = %user.username, verb, subresource = sub, error = %e, "cannot review access with the apiserver");
                Err(Refusal::AuthorizationError {
                    user: user.username,
                    verb: verb.into(),
                    subresource: sub.into(),
                })
            }
        }
    }
}

/// The middleware: lets `/healthz` through, authenticates and authorizes everything else, and
/// hands the caller's [`UserInfo`] to the handler as a request extension.
pub async fn filter(State(auth): State<Arc<Auth>>, mut req: Request, next: Next) -> Response {
    if req.uri().path() == HEALTHZ {
        return next.run(req).await;
    }
    let cert = req
        .extensions()
        .get::<ClientCert>()
        .cloned()
        .unwrap_or_default();
    match auth
        .check(&cert, req.method(), req.uri().path(), req.headers())
        .await
    {
        Ok(user) => {
            req.extensions_mut().insert(user);
            next.run(req).await
        }
        Err(refusal) => refusal.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::FakeApi;
    use axum::Router;
    use axum::body::Body;
    use axum::routing::get;
    use tower::ServiceExt as _;

    const NODE: &str = "node-1";

    fn setup() -> (FakeApi, Router) {
        let fake = FakeApi::new();
        let auth = Arc::new(Auth::new(Arc::new(fake.clone()), NODE));
        let router = Router::new()
            .route(HEALTHZ, get(|| async { "ok" }))
            .route("/pods", get(|| async { "pods" }))
            .route("/stats/summary", get(|| async { "summary" }))
            .route(
                "/exec/{ns}/{pod}/{c}",
                get(|| async { "exec" }).post(|| async { "exec" }),
            )
            .layer(axum::middleware::from_fn_with_state(auth, filter));
        (fake, router)
    }

    /// Sends one request as a caller with `cert` and/or `token`; returns status and body.
    async fn call(
        router: &Router,
        method: Method,
        path: &str,
        cert: Option<UserInfo>,
        token: Option<&str>,
    ) -> (StatusCode, String) {
        let mut req = http::Request::builder().method(method).uri(path);
        if let Some(token) = token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let req = req
            .extension(ClientCert(cert.map(Arc::new)))
            .body(Body::empty())
            .unwrap();
        let response = router.clone().oneshot(req).await.unwrap();
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    #[test]
    fn paths_map_to_node_subresources_as_the_kubelets_do() {
        for (path, want) in [
            ("/stats", "stats"),
            ("/stats/summary", "stats"),
            ("/metrics", "metrics"),
            ("/metrics/cadvisor", "metrics"),
            ("/logs/", "log"),
            ("/logs/syslog", "log"),
            ("/spec/", "spec"),
            ("/checkpoint/default/web/main", "checkpoint"),
            ("/pods", "proxy"),
            ("/runningpods/", "proxy"),
            ("/exec/default/web/main", "proxy"),
            ("/run/default/web/main", "proxy"),
            ("/attach/default/web/main", "proxy"),
            ("/portForward/default/web", "proxy"),
            ("/containerLogs/default/web/main", "proxy"),
            ("/configz", "proxy"),
            // Only whole path segments count.
            ("/statsz", "proxy"),
            ("/metricsfoo", "proxy"),
            ("/", "proxy"),
        ] {
            assert_eq!(subresource(path), want, "{path}");
        }
    }

    #[test]
    fn verbs_come_from_the_http_method() {
        for (method, want) in [
            (Method::GET, "get"),
            (Method::POST, "create"),
            (Method::PUT, "update"),
            (Method::PATCH, "patch"),
            (Method::DELETE, "delete"),
            (Method::HEAD, ""),
        ] {
            assert_eq!(verb(&method), want, "{method}");
        }
        let a = attributes(NODE, &Method::POST, "/exec/default/web/main");
        assert_eq!(a.verb.as_deref(), Some("create"));
        assert_eq!(a.version.as_deref(), Some("v1"));
        assert_eq!(a.resource.as_deref(), Some("nodes"));
        assert_eq!(a.subresource.as_deref(), Some("proxy"));
        assert_eq!(a.name.as_deref(), Some(NODE));
        assert_eq!(a.namespace, None);
        assert_eq!(a.group, None);
    }

    #[test]
    fn bearer_tokens_are_read_from_the_authorization_header() {
        let headers = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::AUTHORIZATION, v.parse().unwrap());
            h
        };
        assert_eq!(bearer_token(&headers("Bearer abc")), Some("abc"));
        assert_eq!(bearer_token(&headers("bearer abc")), Some("abc"));
        assert_eq!(bearer_token(&headers("Bearer ")), None);
        assert_eq!(bearer_token(&headers("Basic abc")), None);
        assert_eq!(bearer_token(&HeaderMap::new()), None);
    }

    #[tokio::test]
    async fn callers_without_credentials_get_401_but_healthz_answers_anyone() {
        let (fake, router) = setup();
        for path in ["/pods", "/stats/summary", "/exec/default/web/main"] {
            let (status, body) = call(&router, Method::GET, path, None, None).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}");
            assert_eq!(body, "Unauthorized");
        }
        let (status, body) = call(&router, Method::GET, HEALTHZ, None, None).await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "ok"));
        assert!(fake.token_reviews().is_empty());
        assert!(
            fake.access_reviews().is_empty(),
            "{:?}",
            fake.access_reviews()
        );
    }

    #[tokio::test]
    async fn a_certificate_user_is_allowed_what_the_apiserver_allows_and_forbidden_the_rest() {
        let (fake, router) = setup();
        fake.grant("metrics-reader", "get", "stats");
        let reader = || Some(UserInfo::new("metrics-reader", &["monitoring"]));

        let (status, body) = call(&router, Method::GET, "/stats/summary", reader(), None).await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "summary"));

        let (status, body) = call(&router, Method::GET, "/pods", reader(), None).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert_eq!(
            body,
            "Forbidden (user=metrics-reader, verb=get, resource=nodes, subresource(s)=[proxy])\n"
        );

        let (status, body) = call(
            &router,
            Method::POST,
            "/exec/default/web/main",
            reader(),
            None,
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert_eq!(
            body,
            "Forbidden (user=metrics-reader, verb=create, resource=nodes, subresource(s)=[proxy])\n"
        );
        assert_eq!(
            fake.access_reviews(),
            [
                ("metrics-reader".into(), "get".into(), "stats".into()),
                ("metrics-reader".into(), "get".into(), "proxy".into()),
                ("metrics-reader".into(), "create".into(), "proxy".into()),
            ]
        );
    }

    #[tokio::test]
    async fn the_apiservers_kubelet_client_certificate_is_allowed_as_a_master() {
        let (fake, router) = setup();
        // What the apiserver's authorizer answers for system:masters.
        fake.grant("system:masters", "*", "*");
        let ca = skiff_common::pki::new_ca().unwrap();
        let client = skiff_common::pki::issue(
            &ca,
            "kube-apiserver-kubelet-client",
            &["system:masters"],
            &[],
        )
        .unwrap();
        let der = rustls_pemfile::certs(&mut client.cert_pem.as_bytes())
            .next()
            .unwrap()
            .unwrap();
        let cert = ClientCert::from_chain(Some(&[der]));
        let user = cert.0.as_deref().cloned();
        assert_eq!(
            user,
            Some(UserInfo::new(
                "kube-apiserver-kubelet-client",
                &["system:masters"]
            ))
        );
        for (method, path, want) in [
            (Method::GET, "/pods", "pods"),
            (Method::GET, "/stats/summary", "summary"),
            (Method::POST, "/exec/default/web/main", "exec"),
        ] {
            let (status, body) = call(&router, method, path, user.clone(), None).await;
            assert_eq!((status, body.as_str()), (StatusCode::OK, want), "{path}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_bearer_token_is_reviewed_once_and_then_cached() {
        let (fake, router) = setup();
        let sa = "system:serviceaccount:monitoring:scraper";
        fake.add_token(
            "t0ken",
            UserInfo::new(sa, &["system:serviceaccounts", "system:authenticated"]),
        );
        fake.grant(sa, "get", "stats");
        for _ in 0..3 {
            let (status, _) =
                call(&router, Method::GET, "/stats/summary", None, Some("t0ken")).await;
            assert_eq!(status, StatusCode::OK);
        }
        assert_eq!(fake.token_reviews(), ["t0ken"]);
        assert_eq!(fake.access_reviews().len(), 1);

        // The token's user is forbidden what the apiserver does not allow it.
        let (status, body) = call(&router, Method::GET, "/pods", None, Some("t0ken")).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert_eq!(
            body,
            format!("Forbidden (user={sa}, verb=get, resource=nodes, subresource(s)=[proxy])\n")
        );

        // Past the cache's lifetime the apiserver is asked again.
        tokio::time::advance(TOKEN_TTL + Duration::from_secs(1)).await;
        let (status, _) = call(&router, Method::GET, "/stats/summary", None, Some("t0ken")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(fake.token_reviews(), ["t0ken", "t0ken"]);
    }

    #[tokio::test(start_paused = true)]
    async fn an_unknown_token_gets_401_and_is_asked_about_again_after_30_seconds() {
        let (fake, router) = setup();
        for _ in 0..2 {
            let (status, body) = call(&router, Method::GET, "/pods", None, Some("nope")).await;
            assert_eq!(
                (status, body.as_str()),
                (StatusCode::UNAUTHORIZED, "Unauthorized")
            );
        }
        assert_eq!(fake.token_reviews().len(), 1);
        tokio::time::advance(TOKEN_FAILURE_TTL + Duration::from_secs(1)).await;
        fake.add_token("nope", UserInfo::new("late", &[]));
        fake.grant("late", "get", "proxy");
        let (status, _) = call(&router, Method::GET, "/pods", None, Some("nope")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(fake.token_reviews().len(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn decisions_are_cached_five_minutes_when_allowed_and_30_seconds_when_denied() {
        let (fake, router) = setup();
        let alice = || Some(UserInfo::new("alice", &[]));
        fake.grant("alice", "get", "stats");
        for _ in 0..2 {
            call(&router, Method::GET, "/stats/summary", alice(), None).await;
            call(&router, Method::GET, "/pods", alice(), None).await;
        }
        assert_eq!(fake.access_reviews().len(), 2);

        // Denials expire first: alice's new grant shows after 30 s.
        fake.grant("alice", "get", "proxy");
        tokio::time::advance(UNAUTHORIZED_TTL + Duration::from_secs(1)).await;
        let (status, _) = call(&router, Method::GET, "/pods", alice(), None).await;
        assert_eq!(status, StatusCode::OK);
        let (status, _) = call(&router, Method::GET, "/stats/summary", alice(), None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(fake.access_reviews().len(), 3);

        tokio::time::advance(AUTHORIZED_TTL).await;
        call(&router, Method::GET, "/stats/summary", alice(), None).await;
        assert_eq!(fake.access_reviews().len(), 4);
    }

    #[tokio::test]
    async fn reviews_that_fail_are_not_cached() {
        let (fake, router) = setup();
        fake.add_token("t", UserInfo::new("bob", &[]));
        fake.grant("bob", "*", "*");
        fake.fail_reviews(Some("connection refused"));
        let (status, _) = call(&router, Method::GET, "/pods", None, Some("t")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let (status, body) = call(
            &router,
            Method::GET,
            "/pods",
            Some(UserInfo::new("bob", &[])),
            None,
        )
        .await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            body,
            "Authorization error (user=bob, verb=get, resource=nodes, subresource=proxy)"
        );
        fake.fail_reviews(None);
        let (status, _) = call(&router, Method::GET, "/pods", None, Some("t")).await;
        assert_eq!(status, StatusCode::OK);
    }

    #[tokio::test]
    async fn every_caller_is_in_system_authenticated() {
        let (fake, _) = setup();
        let auth = Auth::new(Arc::new(fake.clone()), NODE);
        let cert = ClientCert(Some(Arc::new(UserInfo::new("n", &["system:nodes"]))));
        let user = auth.authenticate(&cert, &HeaderMap::new()).await.unwrap();
        assert_eq!(user.groups, ["system:nodes", AUTHENTICATED]);
    }
}
