//! The pod worker's ServiceAccount tokens, kept as Kubernetes' kubelet token manager keeps
//! them: one token per (service account, audiences, expiration) reused until it is older than
//! 80% of its lifetime or than 24 hours, then fetched again; when a refresh fails, the old
//! token serves while it is valid and the refresh is retried with backoff.
//!
//! Each worker has its own cache (the bound object is its pod), so the cache goes away with
//! the pod, as the kubelet drops a pod's tokens when it is deleted.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Mutex;
use std::time::Duration;

use skiff_common::Backoff;
// Tokio's clock, so that tests can pause and advance it.
use tokio::time::Instant;

use crate::api::PodApi;

/// A token older than this is refreshed whatever its lifetime (Kubernetes' `maxTTL`).
const MAX_TTL: Duration = Duration::from_secs(24 * 60 * 60);
/// How soon a failed fetch is retried at first; the delay doubles up to `RETRY_MAX`.
const RETRY_START: Duration = Duration::from_secs(10);
const RETRY_MAX: Duration = Duration::from_secs(300);

/// What a token is asked for with; the bound object (the worker's pod) is implied.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct TokenSpec {
    pub namespace: String,
    pub service_account: String,
    /// Empty: the apiserver's own audience.
    pub audiences: Vec<String>,
    pub expiration_seconds: i64,
}

impl fmt::Display for TokenSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "serviceaccount {}/{}",
            self.namespace, self.service_account
        )?;
        if !self.audiences.is_empty() {
            write!(f, " (audiences {})", self.audiences.join(","))?;
        }
        Ok(())
    }
}

/// A token the apiserver issued, with its times on the worker's (monotonic) clock.
#[derive(Clone)]
struct Issued {
    token: String,
    /// When the kubelet received it: its lifetime runs from here to `expires`.
    fetched: Instant,
    expires: Instant,
}

impl Issued {
    /// Whether it is time to fetch a new one: past 80% of the lifetime, or older than a day.
    fn needs_refresh(&self, now: Instant) -> bool {
        let lifetime = self.expires.saturating_duration_since(self.fetched);
        now >= self.fetched + MAX_TTL || now + lifetime / 5 >= self.expires
    }

    fn expired(&self, now: Instant) -> bool {
        now >= self.expires
    }
}

/// One cache entry: the latest token, and the retry schedule after failed fetches.
struct Entry {
    issued: Option<Issued>,
    backoff: Backoff,
    retry_at: Option<Instant>,
    last_error: String,
}

impl Default for Entry {
    fn default() -> Self {
        Entry {
            issued: None,
            backoff: Backoff::new(RETRY_START, RETRY_MAX),
            retry_at: None,
            last_error: String::new(),
        }
    }
}

/// A worker's tokens. Interior mutability, because volumes are projected from `&Worker`; the
/// lock is never held across an await (the worker is one task, so fetches do not race).
#[derive(Default)]
pub(super) struct Tokens {
    cache: Mutex<BTreeMap<TokenSpec, Entry>>,
}

impl Tokens {
    fn with_entry<T>(&self, spec: &TokenSpec, f: impl FnOnce(&mut Entry) -> T) -> T {
        let mut cache = self.cache.lock().expect("token cache poisoned");
        f(cache.entry(spec.clone()).or_default())
    }

    /// The token to write for `spec`, bound to pod `pod_name`/`pod_uid`: the cached one while
    /// it is fresh, else a new one from the API; the error says why there is no valid token.
    pub(super) async fn get(
        &self,
        api: &dyn PodApi,
        spec: &TokenSpec,
        pod_name: &str,
        pod_uid: &str,
    ) -> Result<String, String> {
        let now = Instant::now();
        let (cached, retry_at, last_error) = self.with_entry(spec, |e| {
            (e.issued.clone(), e.retry_at, e.last_error.clone())
        });
        if let Some(t) = &cached
            && !t.needs_refresh(now)
        {
            return Ok(t.token.clone());
        }
        if retry_at.is_some_and(|at| now < at) {
            // Backing off after a failed fetch: answer as that fetch did.
            return fallback(spec, cached.as_ref(), now, &last_error);
        }
        let answer = api
            .request_token(
                &spec.namespace,
                &spec.service_account,
                spec.audiences.clone(),
                spec.expiration_seconds,
                pod_name,
                pod_uid,
            )
            .await;
        let now = Instant::now();
        match answer {
            Ok((token, expiration)) => {
                // The apiserver's expiration is wall-clock time; what is left of it is
                // counted on the monotonic clock from now.
                let left = expiration
                    .duration_since(jiff::Timestamp::now())
                    .try_into()
                    .unwrap_or(Duration::ZERO);
                let issued = Issued {
                    token: token.clone(),
                    fetched: now,
                    expires: now + left,
                };
                self.with_entry(spec, |e| {
                    e.issued = Some(issued);
                    e.backoff.reset();
                    e.retry_at = None;
                    e.last_error.clear();
                });
                Ok(token)
            }
            Err(err) => {
                let err = err.to_string();
                self.with_entry(spec, |e| {
                    e.retry_at = Some(now + e.backoff.next_delay());
                    e.last_error = err.clone();
                });
                tracing::warn!(token = %spec, pod = pod_name, error = %err, "couldn't update a service account token");
                fallback(spec, cached.as_ref(), now, &err)
            }
        }
    }
}

/// After a failed fetch: the old token while it is valid, else the error.
fn fallback(
    spec: &TokenSpec,
    cached: Option<&Issued>,
    now: Instant,
    error: &str,
) -> Result<String, String> {
    match cached {
        None => Err(format!("failed to fetch token: {error}")),
        Some(t) if t.expired(now) => Err(format!(
            "token for {spec} expired and refresh failed: {error}"
        )),
        Some(t) => Ok(t.token.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::FakeApi;

    fn spec(expiration_seconds: i64) -> TokenSpec {
        TokenSpec {
            namespace: "default".into(),
            service_account: "default".into(),
            audiences: vec![],
            expiration_seconds,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_long_lived_token_is_refreshed_after_a_day() {
        let api = FakeApi::new();
        let tokens = Tokens::default();
        let week = spec(7 * 24 * 3600);
        let get = || tokens.get(&api, &week, "web", "uid-web");
        assert_eq!(get().await.unwrap(), "fake-token-1");
        tokio::time::advance(MAX_TTL - Duration::from_secs(1)).await;
        assert_eq!(get().await.unwrap(), "fake-token-1");
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(get().await.unwrap(), "fake-token-2");
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_refresh_keeps_the_valid_token_and_retries_with_backoff() {
        let api = FakeApi::new();
        let tokens = Tokens::default();
        let hour = spec(3600);
        let get = || tokens.get(&api, &hour, "web", "uid-web");
        assert_eq!(get().await.unwrap(), "fake-token-1");
        api.fail_token_requests(Some("apiserver unavailable"));
        tokio::time::advance(Duration::from_secs(2880)).await;
        assert_eq!(get().await.unwrap(), "fake-token-1", "still valid");
        assert_eq!(api.token_requests().len(), 2);
        // Within the backoff nothing is asked.
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(get().await.unwrap(), "fake-token-1");
        assert_eq!(api.token_requests().len(), 2);
        // Past it (10 s ± 20%), the next refresh goes out; the apiserver is back.
        api.fail_token_requests(None);
        tokio::time::advance(Duration::from_secs(8)).await;
        assert_eq!(get().await.unwrap(), "fake-token-3");
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_valid_token_a_failed_fetch_is_an_error() {
        let api = FakeApi::new();
        let tokens = Tokens::default();
        let hour = spec(3600);
        let get = || tokens.get(&api, &hour, "web", "uid-web");
        api.fail_token_requests(Some("serviceaccounts \"default\" not found"));
        assert_eq!(
            get().await,
            Err("failed to fetch token: serviceaccounts \"default\" not found".into())
        );
        api.fail_token_requests(None);
        tokio::time::advance(Duration::from_secs(15)).await;
        assert_eq!(get().await.unwrap(), "fake-token-2");
        api.fail_token_requests(Some("apiserver unavailable"));
        tokio::time::advance(Duration::from_secs(3600)).await;
        assert_eq!(
            get().await,
            Err(
                "token for serviceaccount default/default expired and refresh failed: \
                 apiserver unavailable"
                    .into()
            )
        );
    }
}
