//! Authentication (client certificates, bearer tokens from a kube-apiserver style CSV file,
//! anonymous requests) and authorization: the [`Authorizer`] trait, the simple authorizers and
//! the union kube-apiserver builds from `--authorization-mode` (RBAC lives in
//! [`crate::rbac`]).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UserInfo {
    pub name: String,
    pub uid: String,
    pub groups: Vec<String>,
    /// Extra attributes (e.g. the pod a ServiceAccount token is bound to).
    pub extra: BTreeMap<String, Vec<String>>,
}

impl UserInfo {
    /// The user of requests without credentials (`--anonymous-auth`).
    pub fn anonymous() -> Self {
        UserInfo {
            name: ANONYMOUS.into(),
            groups: vec![UNAUTHENTICATED.into()],
            ..Default::default()
        }
    }

    /// Whether the user is in `group`.
    pub fn in_group(&self, group: &str) -> bool {
        self.groups.iter().any(|g| g == group)
    }
}

/// The user name of anonymous requests.
pub const ANONYMOUS: &str = "system:anonymous";
/// The group of anonymous requests.
pub const UNAUTHENTICATED: &str = "system:unauthenticated";
/// The group of every authenticated user.
pub const AUTHENTICATED: &str = "system:authenticated";
/// Members may do everything, whatever the other authorizers say (kube-apiserver's
/// privileged group).
pub const MASTERS: &str = "system:masters";

/// The identity the TLS layer read from a verified client certificate.
#[derive(Debug, Clone)]
pub struct PeerIdentity(pub Option<Arc<UserInfo>>);

/// What a request wants to do, for authorization (Kubernetes' `authorizer.Attributes`).
#[derive(Debug, Clone, Default)]
pub struct Attributes<'a> {
    pub verb: &'a str,
    /// False for non-resource requests such as `/version`, which are matched by `path`.
    pub resource_request: bool,
    pub group: &'a str,
    pub version: &'a str,
    pub resource: &'a str,
    pub subresource: Option<&'a str>,
    pub namespace: Option<&'a str>,
    pub name: Option<&'a str>,
    pub path: &'a str,
}

impl Attributes<'_> {
    /// `pods` or `pods/log`, as RBAC rules and messages name it.
    pub fn combined_resource(&self) -> std::borrow::Cow<'_, str> {
        match self.subresource {
            Some(sub) if !sub.is_empty() => format!("{}/{sub}", self.resource).into(),
            _ => self.resource.into(),
        }
    }

    /// Kubernetes' message for a denied request (without the `... is forbidden: ` prefix the
    /// Status adds).
    pub fn forbidden_message(&self, user: &str) -> String {
        if !self.resource_request {
            return format!("User {user:?} cannot {} path {:?}", self.verb, self.path);
        }
        let resource = self.combined_resource();
        match self.namespace.filter(|ns| !ns.is_empty()) {
            Some(ns) => format!(
                "User {user:?} cannot {} resource {resource:?} in API group {:?} in the namespace {ns:?}",
                self.verb, self.group
            ),
            None => format!(
                "User {user:?} cannot {} resource {resource:?} in API group {:?} at the cluster scope",
                self.verb, self.group
            ),
        }
    }
}

/// An authorizer's answer. A union of authorizers asks each in turn until one allows or denies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Deny(String),
    /// Neither allowed nor denied; the reason (often empty) is reported if nobody allows.
    NoOpinion(String),
}

impl Decision {
    pub fn allowed(&self) -> bool {
        matches!(self, Decision::Allow)
    }
}

/// The rules a user holds in one namespace, for `SelfSubjectRulesReview`.
#[derive(Debug, Clone, Default)]
pub struct RuleList {
    pub rules: Vec<k8s_openapi::api::rbac::v1::PolicyRule>,
    /// Set when an authorizer cannot list what it would allow (e.g. the Node authorizer).
    pub incomplete: bool,
    pub errors: Vec<String>,
}

/// Decides whether a user may make a request.
pub trait Authorizer: Send + Sync + 'static {
    fn authorize(&self, user: &UserInfo, attrs: &Attributes<'_>) -> Decision;

    /// What the user may do in `namespace` (cluster-wide rules included).
    fn rules_for(&self, _user: &UserInfo, _namespace: &str) -> RuleList {
        RuleList {
            incomplete: true,
            ..Default::default()
        }
    }
}

/// An authorizer shared with the tasks that keep it current.
impl<A: Authorizer> Authorizer for Arc<A> {
    fn authorize(&self, user: &UserInfo, attrs: &Attributes<'_>) -> Decision {
        (**self).authorize(user, attrs)
    }

    fn rules_for(&self, user: &UserInfo, namespace: &str) -> RuleList {
        (**self).rules_for(user, namespace)
    }
}

/// `--authorization-mode AlwaysAllow`: everyone may do everything.
pub struct AlwaysAllow;

impl Authorizer for AlwaysAllow {
    fn authorize(&self, _user: &UserInfo, _attrs: &Attributes<'_>) -> Decision {
        Decision::Allow
    }

    fn rules_for(&self, _user: &UserInfo, _namespace: &str) -> RuleList {
        RuleList {
            rules: vec![everything()],
            ..Default::default()
        }
    }
}

/// `--authorization-mode AlwaysDeny`.
pub struct AlwaysDeny;

impl Authorizer for AlwaysDeny {
    fn authorize(&self, _user: &UserInfo, _attrs: &Attributes<'_>) -> Decision {
        Decision::Deny("Everything is forbidden.".into())
    }

    fn rules_for(&self, _user: &UserInfo, _namespace: &str) -> RuleList {
        RuleList::default()
    }
}

/// A rule granting every verb on every resource and path.
fn everything() -> k8s_openapi::api::rbac::v1::PolicyRule {
    k8s_openapi::api::rbac::v1::PolicyRule {
        verbs: vec!["*".into()],
        api_groups: Some(vec!["*".into()]),
        resources: Some(vec!["*".into()]),
        non_resource_urls: Some(vec!["*".into()]),
        resource_names: None,
    }
}

/// Authorizers asked in order, as kube-apiserver's `--authorization-mode Node,RBAC`; members of
/// `system:masters` are allowed before any of them is asked.
pub struct Union {
    pub authorizers: Vec<Box<dyn Authorizer>>,
}

impl Authorizer for Union {
    fn authorize(&self, user: &UserInfo, attrs: &Attributes<'_>) -> Decision {
        if user.in_group(MASTERS) {
            return Decision::Allow;
        }
        let mut reasons = Vec::new();
        for a in &self.authorizers {
            match a.authorize(user, attrs) {
                Decision::NoOpinion(r) => {
                    if !r.is_empty() {
                        reasons.push(r)
                    }
                }
                decided => return decided,
            }
        }
        Decision::NoOpinion(reasons.join("\n"))
    }

    fn rules_for(&self, user: &UserInfo, namespace: &str) -> RuleList {
        if user.in_group(MASTERS) {
            return RuleList {
                rules: vec![everything()],
                ..Default::default()
            };
        }
        let mut all = RuleList::default();
        for a in &self.authorizers {
            let mut r = a.rules_for(user, namespace);
            all.rules.append(&mut r.rules);
            all.incomplete |= r.incomplete;
            all.errors.append(&mut r.errors);
        }
        all
    }
}

/// One `--authorization-mode` entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthorizationMode {
    AlwaysAllow,
    AlwaysDeny,
    Node,
    Rbac,
}

impl std::str::FromStr for AuthorizationMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "AlwaysAllow" => Self::AlwaysAllow,
            "AlwaysDeny" => Self::AlwaysDeny,
            "Node" => Self::Node,
            "RBAC" => Self::Rbac,
            other => {
                return Err(format!(
                    "unknown authorization mode {other:?}: expected AlwaysAllow, AlwaysDeny, Node or RBAC"
                ));
            }
        })
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
                    extra: BTreeMap::new(),
                },
            );
        }
        Ok(TokenFile { tokens })
    }

    pub fn lookup(&self, token: &str) -> Option<&UserInfo> {
        self.tokens.get(token)
    }
}

/// How a request authenticated.
#[derive(Debug)]
pub enum Authenticated {
    User(Arc<UserInfo>),
    /// Credentials were presented and are wrong: 401, even with anonymous requests allowed.
    Invalid,
    /// No credentials at all.
    None,
}

/// The bearer token of a request, if it carries one.
pub fn bearer_token(headers: &http::HeaderMap) -> Option<&str> {
    headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
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
    groups.push(AUTHENTICATED.into());
    Some(UserInfo {
        name,
        groups,
        ..Default::default()
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
