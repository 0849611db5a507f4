//! Plain HTTPS requests to an [`ApiServer`], for what kubectl would never send (bad input,
//! anonymous requests) and for speed (streams of creates).

use std::io::{BufRead, BufReader};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use base64::Engine as _;
use reqwest::blocking::Client;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue};

use crate::apiserver::ApiServer;

/// An HTTPS client for one server that trusts the server's CA.
#[derive(Clone)]
pub struct Http {
    client: Client,
    base: String,
}

/// A response: status code and body.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: String,
}

impl Reply {
    /// The body parsed as JSON; panics (showing the body) if it is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| {
            panic!(
                "HTTP {} response is not JSON ({e}): {}",
                self.status, self.body
            )
        })
    }
}

/// What a client presents to the server.
enum Credentials<'a> {
    AdminCertificate,
    Token(&'a str),
    None,
}

impl ApiServer {
    /// A client authenticated as the admin kubeconfig's user (its client certificate).
    pub fn http(&self) -> Http {
        self.http_client(Credentials::AdminCertificate)
    }

    /// The PEM of the CA that signed the server's certificate (from the admin kubeconfig).
    pub fn ca_pem(&self) -> Vec<u8> {
        KubeconfigPems::read(&self.kubeconfig()).ca
    }

    /// A client that presents no credentials at all.
    pub fn http_anonymous(&self) -> Http {
        self.http_client(Credentials::None)
    }

    /// A client that sends `Authorization: Bearer <token>`.
    pub fn http_with_token(&self, token: &str) -> Http {
        self.http_client(Credentials::Token(token))
    }

    fn http_client(&self, credentials: Credentials<'_>) -> Http {
        let kubeconfig = KubeconfigPems::read(&self.kubeconfig());
        let mut builder = Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(
                reqwest::Certificate::from_pem(&kubeconfig.ca).expect("the kubeconfig's CA is PEM"),
            )
            .timeout(Duration::from_secs(30));
        match credentials {
            Credentials::AdminCertificate => {
                let mut pem = kubeconfig.client_cert.clone();
                pem.extend_from_slice(b"\n");
                pem.extend_from_slice(&kubeconfig.client_key);
                builder = builder.identity(
                    reqwest::Identity::from_pem(&pem)
                        .expect("the kubeconfig's client certificate and key are PEM"),
                );
            }
            Credentials::Token(token) => {
                let mut headers = HeaderMap::new();
                headers.insert(
                    AUTHORIZATION,
                    HeaderValue::from_str(&format!("Bearer {token}"))
                        .expect("a token is a header value"),
                );
                builder = builder.default_headers(headers);
            }
            Credentials::None => {}
        }
        Http {
            client: builder.build().expect("build an HTTPS client"),
            base: self.url(),
        }
    }
}

impl Http {
    pub fn get(&self, path: &str) -> Reply {
        self.send("GET", path, None, Vec::new())
    }

    pub fn delete(&self, path: &str) -> Reply {
        self.send("DELETE", path, None, Vec::new())
    }

    pub fn post_json(&self, path: &str, body: &serde_json::Value) -> Reply {
        self.send(
            "POST",
            path,
            Some("application/json"),
            body.to_string().into_bytes(),
        )
    }

    pub fn put_json(&self, path: &str, body: &serde_json::Value) -> Reply {
        self.send(
            "PUT",
            path,
            Some("application/json"),
            body.to_string().into_bytes(),
        )
    }

    /// Sends a request and panics on a transport error (no response at all).
    pub fn send(
        &self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> Reply {
        self.try_send(method, path, content_type, body)
            .unwrap_or_else(|e| panic!("{method} {path}: no response: {e}"))
    }

    /// Sends a request with extra headers (e.g. `Impersonate-User`) and a JSON body, if any.
    pub fn send_with_headers(
        &self,
        method: &str,
        path: &str,
        body: Option<&serde_json::Value>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let (ct, bytes) = match body {
            Some(b) => (Some("application/json"), b.to_string().into_bytes()),
            None => (None, Vec::new()),
        };
        self.request(method, path, ct, bytes, headers)
            .unwrap_or_else(|e| panic!("{method} {path}: no response: {e}"))
    }

    /// Sends a request; `Err` if no response came (connection refused, reset, timeout).
    pub fn try_send(
        &self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> Result<Reply, String> {
        self.request(method, path, content_type, body, &[])
    }

    fn request(
        &self,
        method: &str,
        path: &str,
        content_type: Option<&str>,
        body: Vec<u8>,
        headers: &[(&str, &str)],
    ) -> Result<Reply, String> {
        let method: reqwest::Method = method.parse().expect("an HTTP method");
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        if let Some(ct) = content_type {
            request = request.header(CONTENT_TYPE, ct);
        }
        if !body.is_empty() {
            request = request.body(body);
        }
        let response = request.send().map_err(|e| format!("{e:?}"))?;
        let status = response.status().as_u16();
        let body = response
            .text()
            .map_err(|e| format!("reading the body: {e:?}"))?;
        Ok(Reply { status, body })
    }
}

impl Http {
    /// Opens a watch (`path` should carry `watch=1`) and returns its events as they come. The
    /// stream is read on a thread until the server ends it (add `timeoutSeconds` to bound it).
    pub fn watch(&self, path: &str) -> WatchEvents {
        let response = self
            .client
            .get(format!("{}{path}", self.base))
            // A watch lasts as long as the server keeps it open, not the client's usual 30 s.
            .timeout(Duration::from_secs(600))
            .send()
            .unwrap_or_else(|e| panic!("GET {path}: no response: {e:?}"));
        let status = response.status().as_u16();
        assert_eq!(
            status,
            200,
            "GET {path}: HTTP {status}: {}",
            response.text().unwrap_or_default()
        );
        let (tx, events) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(response).lines() {
                let Ok(line) = line else { break };
                if line.trim().is_empty() {
                    continue;
                }
                let event = serde_json::from_str(&line)
                    .unwrap_or_else(|e| serde_json::json!({"type": "UNPARSEABLE", "line": line, "error": e.to_string()}));
                if tx.send(event).is_err() {
                    break;
                }
            }
        });
        WatchEvents {
            path: path.to_owned(),
            events,
            seen: Vec::new(),
        }
    }
}

/// The events of a watch opened with [`Http::watch`], each `{"type": ..., "object": ...}`.
pub struct WatchEvents {
    path: String,
    events: Receiver<serde_json::Value>,
    seen: Vec<serde_json::Value>,
}

impl WatchEvents {
    /// The next event within `timeout`, or `None` if none came (or the stream ended).
    pub fn next(&mut self, timeout: Duration) -> Option<serde_json::Value> {
        match self.events.recv_timeout(timeout) {
            Ok(event) => {
                self.seen.push(event.clone());
                Some(event)
            }
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => None,
        }
    }

    /// The next event that is not a BOOKMARK; panics (showing what came) if none comes in
    /// `timeout`.
    pub fn expect_next(&mut self, timeout: Duration) -> serde_json::Value {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next(left) {
                Some(event) if event["type"] == "BOOKMARK" => continue,
                Some(event) => return event,
                None => panic!(
                    "watch {}: no event within {timeout:?}; events so far: {:#?}",
                    self.path, self.seen
                ),
            }
        }
    }
}

/// The PEM blocks of an admin kubeconfig written by the apiserver.
struct KubeconfigPems {
    ca: Vec<u8>,
    client_cert: Vec<u8>,
    client_key: Vec<u8>,
}

impl KubeconfigPems {
    fn read(path: &std::path::Path) -> KubeconfigPems {
        let text = std::fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        let doc: serde_yaml::Value = serde_yaml::from_str(&text).expect("the kubeconfig is YAML");
        let field = |list: &str, inner: &str, key: &str| -> Vec<u8> {
            let b64 = doc[list][0][inner][key]
                .as_str()
                .unwrap_or_else(|| panic!("kubeconfig has no {list}[0].{inner}.{key}"));
            base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .unwrap_or_else(|e| panic!("kubeconfig {list}[0].{inner}.{key} is not base64: {e}"))
        };
        KubeconfigPems {
            ca: field("clusters", "cluster", "certificate-authority-data"),
            client_cert: field("users", "user", "client-certificate-data"),
            client_key: field("users", "user", "client-key-data"),
        }
    }
}
