//! `--use-service-account-credentials`: each controller writes with a client of its own,
//! authenticated as the ServiceAccount `kube-system/<name>` (the names kube-controller-manager
//! uses, which the bootstrap policy's `system:controller:<name>` roles are bound to), so that
//! RBAC limits what each controller may do. Informers keep the controller-manager's own client,
//! as upstream's shared informers do.
//!
//! A controller's token comes from the TokenRequest API (`serviceaccounts/<name>/token`, one
//! hour, the ServiceAccount created first if missing) through the controller-manager's own
//! client, and is replaced in place at 80% of its lifetime (upstream's dynamic client builder
//! refreshes with 20% of the lifetime left): the controller's client reads the current token
//! on every request, so it never has to be rebuilt. Without the flag every controller gets the
//! controller-manager's own client.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use futures::future::BoxFuture;
use http::HeaderValue;
use http::header::AUTHORIZATION;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::PostParams;
use kube::client::ClientBuilder;
use kube::{Api, Client};
use skiff_common::Backoff;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// The namespace of the controllers' ServiceAccounts.
pub const NAMESPACE: &str = "kube-system";
/// The lifetime asked for (upstream's default for controller tokens).
pub const EXPIRATION_SECONDS: i64 = 3600;
/// The share of a token's lifetime after which it is replaced.
pub const REFRESH_AT: f64 = 0.8;

/// Errors of issuing a controller's token.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("ServiceAccount {NAMESPACE}/{account}: {source}")]
    Api {
        account: String,
        #[source]
        source: kube::Error,
    },
    #[error("ServiceAccount {NAMESPACE}/{0}: the TokenRequest answer has no token")]
    NoToken(String),
    #[error("building a client for ServiceAccount {NAMESPACE}/{account}: {source}")]
    Client {
        account: String,
        #[source]
        source: kube::Error,
    },
}

/// A token and how long it is valid from now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issued {
    pub token: String,
    pub lifetime: Duration,
}

/// Where tokens come from: the TokenRequest API ([`TokenRequests`]), or a test's fake.
pub trait TokenSource: Send + Sync + 'static {
    fn issue<'a>(&'a self, account: &'a str) -> BoxFuture<'a, Result<Issued, Error>>;
}

/// Tokens from `POST /api/v1/namespaces/kube-system/serviceaccounts/<name>/token`, made with
/// the controller-manager's own client.
pub struct TokenRequests {
    pub client: Client,
}

impl TokenSource for TokenRequests {
    fn issue<'a>(&'a self, account: &'a str) -> BoxFuture<'a, Result<Issued, Error>> {
        Box::pin(async move {
            let api_err = |source| Error::Api {
                account: account.to_string(),
                source,
            };
            let api: Api<ServiceAccount> = Api::namespaced(self.client.clone(), NAMESPACE);
            if api.get_opt(account).await.map_err(api_err)?.is_none() {
                let mut sa = ServiceAccount::default();
                sa.metadata.name = Some(account.to_string());
                sa.metadata.namespace = Some(NAMESPACE.to_string());
                match api.create(&PostParams::default(), &sa).await {
                    Ok(_) => tracing::info!(account, "created the controller's ServiceAccount"),
                    Err(kube::Error::Api(s)) if s.code == 409 => {}
                    Err(e) => return Err(api_err(e)),
                }
            }
            let request = TokenRequest {
                spec: TokenRequestSpec {
                    audiences: Vec::new(),
                    expiration_seconds: Some(EXPIRATION_SECONDS),
                    ..Default::default()
                },
                ..Default::default()
            };
            let answer = api
                .create_token_request(account, &PostParams::default(), &request)
                .await
                .map_err(api_err)?;
            let status = answer
                .status
                .filter(|s| !s.token.is_empty())
                .ok_or_else(|| Error::NoToken(account.to_string()))?;
            // The apiserver may grant another lifetime than asked for; its expiry counts.
            let left = status
                .expiration_timestamp
                .0
                .duration_since(jiff::Timestamp::now());
            let lifetime = Duration::try_from(left).unwrap_or(Duration::ZERO);
            Ok(Issued {
                token: status.token,
                lifetime,
            })
        })
    }
}

/// When to replace a token valid for `lifetime`.
pub fn refresh_after(lifetime: Duration) -> Duration {
    lifetime.mul_f64(REFRESH_AT)
}

/// One controller's current bearer token, read by its client on every request.
#[derive(Debug)]
struct Bearer {
    header: RwLock<Option<HeaderValue>>,
    /// Whether a first token arrived.
    ready: watch::Sender<bool>,
}

impl Bearer {
    fn new() -> Arc<Bearer> {
        Arc::new(Bearer {
            header: RwLock::new(None),
            ready: watch::channel(false).0,
        })
    }

    fn set(&self, token: &str) {
        let Ok(mut value) = HeaderValue::from_str(&format!("Bearer {token}")) else {
            tracing::warn!("a ServiceAccount token is not a valid header value; ignored");
            return;
        };
        value.set_sensitive(true);
        *self.header.write().expect("bearer lock") = Some(value);
        self.ready.send_replace(true);
    }

    fn header(&self) -> Option<HeaderValue> {
        self.header.read().expect("bearer lock").clone()
    }
}

/// Keeps `bearer` filled with a valid token for `account` until `shutdown`.
async fn keep_fresh(
    source: Arc<dyn TokenSource>,
    account: String,
    bearer: Arc<Bearer>,
    shutdown: CancellationToken,
) {
    let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
    loop {
        let wait = match source.issue(&account).await {
            Ok(issued) => {
                backoff.reset();
                bearer.set(&issued.token);
                tracing::debug!(account, lifetime = ?issued.lifetime, "controller token issued");
                refresh_after(issued.lifetime)
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot get the controller's token; retrying");
                backoff.next_delay()
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

/// A client made from `config` (the controller-manager's) that authenticates with `bearer`
/// only: the controller-manager's own credentials (client certificate, token) are dropped.
fn bearer_client(config: &kube::Config, bearer: Arc<Bearer>) -> Result<Client, kube::Error> {
    let mut config = config.clone();
    config.auth_info = Default::default();
    let inject = tower::util::MapRequestLayer::new(move |mut req: http::Request<_>| {
        if let Some(value) = bearer.header() {
            req.headers_mut().insert(AUTHORIZATION, value);
        }
        req
    });
    Ok(ClientBuilder::try_from(config)?.with_layer(&inject).build())
}

enum Mode {
    /// Every controller uses the controller-manager's own client.
    Shared(Client),
    /// Each ServiceAccount gets its own client and token.
    PerAccount {
        config: kube::Config,
        source: Arc<dyn TokenSource>,
        shutdown: CancellationToken,
        issued: Mutex<BTreeMap<String, (Client, Arc<Bearer>)>>,
    },
}

/// The controllers' clients by ServiceAccount name (see the module documentation).
pub struct Credentials {
    mode: Mode,
}

impl Credentials {
    /// Every controller uses `client`.
    pub fn shared(client: Client) -> Credentials {
        Credentials {
            mode: Mode::Shared(client),
        }
    }

    /// Each controller gets a client from `config` (the controller-manager's), with tokens
    /// from `source`, refreshed until `shutdown`.
    pub fn per_account(
        config: kube::Config,
        source: Arc<dyn TokenSource>,
        shutdown: CancellationToken,
    ) -> Result<Credentials, Error> {
        // Build one client now, so that a configuration that cannot make one fails at start
        // rather than in a controller.
        bearer_client(&config, Bearer::new()).map_err(|source| Error::Client {
            account: "(any)".into(),
            source,
        })?;
        Ok(Credentials {
            mode: Mode::PerAccount {
                config,
                source,
                shutdown,
                issued: Mutex::new(BTreeMap::new()),
            },
        })
    }

    /// Whether controllers use their own ServiceAccounts.
    pub fn per_controller(&self) -> bool {
        matches!(self.mode, Mode::PerAccount { .. })
    }

    /// The client a controller writes with, by its ServiceAccount name. The first call for a
    /// name starts keeping its token fresh (on the current tokio runtime).
    pub fn client(&self, account: &str) -> Client {
        let (config, source, shutdown, issued) = match &self.mode {
            Mode::Shared(client) => return client.clone(),
            Mode::PerAccount {
                config,
                source,
                shutdown,
                issued,
            } => (config, source, shutdown, issued),
        };
        let mut issued = issued.lock().expect("credentials lock");
        if let Some((client, _)) = issued.get(account) {
            return client.clone();
        }
        let bearer = Bearer::new();
        let client = bearer_client(config, bearer.clone())
            .expect("the configuration made a client at start, so it makes this one");
        tokio::spawn(keep_fresh(
            source.clone(),
            account.to_string(),
            bearer.clone(),
            shutdown.clone(),
        ));
        issued.insert(account.to_string(), (client.clone(), bearer));
        client
    }

    /// The ServiceAccounts that clients were handed out for.
    pub fn accounts(&self) -> Vec<String> {
        match &self.mode {
            Mode::Shared(_) => Vec::new(),
            Mode::PerAccount { issued, .. } => issued
                .lock()
                .expect("credentials lock")
                .keys()
                .cloned()
                .collect(),
        }
    }

    /// Waits until every client handed out so far has its first token.
    pub async fn ready(&self) {
        let Mode::PerAccount { issued, .. } = &self.mode else {
            return;
        };
        let waiting: Vec<_> = issued
            .lock()
            .expect("credentials lock")
            .values()
            .map(|(_, b)| b.ready.subscribe())
            .collect();
        for mut rx in waiting {
            let _ = rx.wait_for(|r| *r).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Tokens `<account>-1`, `<account>-2`, ... valid for an hour, or failures while `fail`.
    struct Counting {
        calls: AtomicUsize,
        fail: std::sync::atomic::AtomicBool,
    }

    impl TokenSource for Counting {
        fn issue<'a>(&'a self, account: &'a str) -> BoxFuture<'a, Result<Issued, Error>> {
            Box::pin(async move {
                if self.fail.load(Ordering::SeqCst) {
                    return Err(Error::NoToken(account.into()));
                }
                let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
                Ok(Issued {
                    token: format!("{account}-{n}"),
                    lifetime: Duration::from_secs(3600),
                })
            })
        }
    }

    fn token_of(b: &Bearer) -> Option<String> {
        b.header().map(|h| h.to_str().unwrap().to_string())
    }

    /// Lets spawned tasks run without moving the paused clock.
    async fn settle() {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn tokens_are_replaced_at_80_percent_of_their_lifetime_and_retried_on_failure() {
        assert_eq!(
            refresh_after(Duration::from_secs(3600)),
            Duration::from_secs(2880)
        );
        let source = Arc::new(Counting {
            calls: AtomicUsize::new(0),
            fail: false.into(),
        });
        let bearer = Bearer::new();
        let stop = CancellationToken::new();
        tokio::spawn(keep_fresh(
            source.clone(),
            "deployment-controller".into(),
            bearer.clone(),
            stop.clone(),
        ));
        settle().await;
        assert_eq!(
            token_of(&bearer).as_deref(),
            Some("Bearer deployment-controller-1")
        );
        tokio::time::advance(Duration::from_secs(2879)).await;
        settle().await;
        assert_eq!(source.calls.load(Ordering::SeqCst), 1);
        tokio::time::advance(Duration::from_secs(1)).await;
        settle().await;
        assert_eq!(
            token_of(&bearer).as_deref(),
            Some("Bearer deployment-controller-2")
        );

        // The apiserver refuses for a while: the old token stays, and a retry follows soon.
        source.fail.store(true, Ordering::SeqCst);
        tokio::time::advance(Duration::from_secs(2880)).await;
        settle().await;
        assert_eq!(
            token_of(&bearer).as_deref(),
            Some("Bearer deployment-controller-2")
        );
        source.fail.store(false, Ordering::SeqCst);
        tokio::time::advance(Duration::from_secs(2)).await;
        settle().await;
        assert_eq!(
            token_of(&bearer).as_deref(),
            Some("Bearer deployment-controller-3")
        );
        stop.cancel();
    }

    /// Answers every HTTP request with `{}` and reports its Authorization header.
    async fn recording_server() -> (String, tokio::sync::mpsc::UnboundedReceiver<String>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                let (mut conn, _) = listener.accept().await.unwrap();
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    let n = conn.read(&mut chunk).await.unwrap();
                    if n == 0 {
                        break;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
                let head = String::from_utf8_lossy(&buf).to_string();
                let auth = head
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("authorization")
                            .then(|| v.trim().to_string())
                    })
                    .unwrap_or_default();
                tx.send(auth).unwrap();
                let body = "{}";
                let answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                conn.write_all(answer.as_bytes()).await.unwrap();
            }
        });
        (url, rx)
    }

    #[tokio::test]
    async fn a_controller_client_sends_its_current_token_and_not_the_managers_credentials() {
        let (url, mut seen) = recording_server().await;
        let mut config = kube::Config::new(url.parse().unwrap());
        config.auth_info.token = Some("controller-manager-token".to_string().into());
        let base = Client::try_from(config.clone()).unwrap();
        let get = || http::Request::get("/version").body(Vec::new()).unwrap();

        // Without the flag: the controller-manager's own client and token.
        let shared = Credentials::shared(base.clone());
        assert!(!shared.per_controller());
        shared
            .client("deployment-controller")
            .request_text(get())
            .await
            .unwrap();
        assert_eq!(
            seen.recv().await.unwrap(),
            "Bearer controller-manager-token"
        );

        let source = Arc::new(Counting {
            calls: AtomicUsize::new(0),
            fail: false.into(),
        });
        let stop = CancellationToken::new();
        let creds = Credentials::per_account(config, source.clone(), stop.clone()).unwrap();
        let client = creds.client("endpoint-controller");
        // One client (and one token) per account, however often it is asked for.
        let _again = creds.client("endpoint-controller");
        let other = creds.client("endpointslice-controller");
        creds.ready().await;
        assert_eq!(
            creds.accounts(),
            ["endpoint-controller", "endpointslice-controller"]
        );
        assert_eq!(source.calls.load(Ordering::SeqCst), 2);
        client.request_text(get()).await.unwrap();
        assert_eq!(seen.recv().await.unwrap(), "Bearer endpoint-controller-1");
        other.request_text(get()).await.unwrap();
        assert_eq!(
            seen.recv().await.unwrap(),
            "Bearer endpointslice-controller-2"
        );

        // A refreshed token is used by the same client from the next request on.
        let Mode::PerAccount { issued, .. } = &creds.mode else {
            unreachable!()
        };
        let bearer = issued.lock().unwrap()["endpoint-controller"].1.clone();
        bearer.set("rotated");
        client.request_text(get()).await.unwrap();
        assert_eq!(seen.recv().await.unwrap(), "Bearer rotated");
        stop.cancel();
    }
}
