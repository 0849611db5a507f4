//! Authentication (client certificates, bearer tokens from a kube-apiserver style CSV file) and
//! the authorization hook. For now every authenticated user may do everything; RBAC plugs in
//! behind [`Authorizer`].

use std::collections::HashMap;
use std::path::Path;

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserInfo {
    pub name: String,
    pub uid: String,
    pub groups: Vec<String>,
}

/// The identity the TLS layer read from a verified client certificate.
#[derive(Debug, Clone)]
pub struct PeerIdentity(pub Option<std::sync::Arc<UserInfo>>);

/// What a request wants to do, for authorization.
#[derive(Debug, Clone)]
pub struct Attributes<'a> {
    pub verb: &'a str,
    pub group: &'a str,
    pub resource: &'a str,
    pub subresource: Option<&'a str>,
    pub namespace: Option<&'a str>,
    pub name: Option<&'a str>,
    /// For non-resource requests such as `/version`.
    pub path: &'a str,
}

/// Decides whether an authenticated user may make a request.
pub trait Authorizer: Send + Sync + 'static {
    /// `Ok(())` to allow; `Err(reason)` to deny with 403.
    fn authorize(&self, user: &UserInfo, attrs: &Attributes<'_>) -> Result<(), String>;
}

/// Allows every authenticated user (the policy until RBAC lands).
pub struct AllowAuthenticated;

impl Authorizer for AllowAuthenticated {
    fn authorize(&self, _user: &UserInfo, _attrs: &Attributes<'_>) -> Result<(), String> {
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("cannot read token file {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("token file {path} line {line}: {reason} (expected: token,user,uid,\"group1,group2\")")]
    Parse {
        path: String,
        line: usize,
        reason: String,
    },
}

/// Bearer tokens, as kube-apiserver's `--token-auth-file`.
#[derive(Debug, Default, Clone)]
pub struct TokenFile {
    tokens: HashMap<String, UserInfo>,
}

/// Splits one CSV line, honouring double quotes.
fn csv_fields(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => out.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    out.push(cur);
    out.into_iter().map(|s| s.trim().to_string()).collect()
}

impl TokenFile {
    pub fn load(path: &Path) -> Result<Self, AuthError> {
        let text = std::fs::read_to_string(path).map_err(|source| AuthError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    pub fn parse(text: &str, path: &str) -> Result<Self, AuthError> {
        let mut tokens = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() || line.trim_start().starts_with('#') {
                continue;
            }
            let f = csv_fields(line);
            if f.len() < 3 || f[0].is_empty() || f[1].is_empty() {
                return Err(AuthError::Parse {
                    path: path.into(),
                    line: i + 1,
                    reason: "needs at least token, user and uid".into(),
                });
            }
            let groups = f
                .get(3)
                .map(|g| {
                    g.split(',')
                        .map(|s| s.trim().to_string())
                        .filter(|s| !s.is_empty())
                        .collect()
                })
                .unwrap_or_default();
            tokens.insert(
                f[0].clone(),
                UserInfo {
                    name: f[1].clone(),
                    uid: f[2].clone(),
                    groups,
                },
            );
        }
        Ok(TokenFile { tokens })
    }

    pub fn lookup(&self, token: &str) -> Option<&UserInfo> {
        self.tokens.get(token)
    }
}

/// Reads the user from a bearer token or, failing that, the client certificate.
pub fn authenticate(
    headers: &http::HeaderMap,
    peer: Option<&PeerIdentity>,
    tokens: &TokenFile,
) -> Option<std::sync::Arc<UserInfo>> {
    if let Some(token) = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    {
        return tokens.lookup(token.trim()).cloned().map(|mut u| {
            if !u.groups.iter().any(|g| g == "system:authenticated") {
                u.groups.push("system:authenticated".into());
            }
            std::sync::Arc::new(u)
        });
    }
    peer.and_then(|p| p.0.clone())
}

/// The user named by a client certificate: CN is the user, each O a group.
pub fn user_from_cert(der: &[u8]) -> Option<UserInfo> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let subject = cert.subject();
    let name = subject
        .iter_common_name()
        .next()?
        .as_str()
        .ok()?
        .to_string();
    let mut groups: Vec<String> = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok().map(String::from))
        .collect();
    groups.push("system:authenticated".into());
    Some(UserInfo {
        name,
        uid: String::new(),
        groups,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_file_with_quoted_groups() {
        let f = TokenFile::parse("abc,alice,1,\"dev,ops\"\n# comment\nxyz,bob,2\n", "t").unwrap();
        assert_eq!(f.lookup("abc").unwrap().groups, vec!["dev", "ops"]);
        assert_eq!(f.lookup("xyz").unwrap().name, "bob");
        assert!(f.lookup("nope").is_none());
    }

    #[test]
    fn token_file_rejects_short_lines() {
        assert!(TokenFile::parse("onlytoken\n", "t").is_err());
    }
}
