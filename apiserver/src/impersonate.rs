//! Impersonation (`Impersonate-User`, `Impersonate-Group`, `Impersonate-Uid`,
//! `Impersonate-Extra-<key>`, what `kubectl --as`/`--as-group` send): the caller must hold the
//! `impersonate` verb on each thing it asks to be, and the request then runs as that user.

use std::collections::BTreeMap;
use std::sync::Arc;

use http::HeaderMap;

use crate::auth::{ANONYMOUS, AUTHENTICATED, Attributes, Authorizer, UNAUTHENTICATED, UserInfo};
use crate::error::{ApiError, ApiResult};

const USER: &str = "impersonate-user";
const GROUP: &str = "impersonate-group";
const UID: &str = "impersonate-uid";
const EXTRA: &str = "impersonate-extra-";

fn values<'a>(headers: &'a HeaderMap, name: &str) -> Vec<&'a str> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect()
}

/// The user a request acts as: `user` itself, or whom it impersonates once every
/// impersonation is authorized.
pub fn apply(
    authz: &dyn Authorizer,
    headers: &HeaderMap,
    user: Arc<UserInfo>,
) -> ApiResult<Arc<UserInfo>> {
    let name = headers.get(USER).and_then(|v| v.to_str().ok());
    let groups = values(headers, GROUP);
    let uid = headers.get(UID).and_then(|v| v.to_str().ok());
    let mut extra: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (h, v) in headers {
        if let Some(key) = h.as_str().strip_prefix(EXTRA)
            && let Ok(v) = v.to_str()
        {
            // Header names cannot carry every key character: kubectl percent-encodes them.
            let key = percent_decode(key);
            extra.entry(key).or_default().push(v.to_string());
        }
    }
    let Some(name) = name else {
        if groups.is_empty() && uid.is_none() && extra.is_empty() {
            return Ok(user);
        }
        return Err(ApiError::internal(
            "Internal error occurred: requested impersonation of groups, a uid or extra fields without impersonating a user",
        ));
    };

    let check = |attrs: Attributes<'_>| -> ApiResult<()> {
        let d = authz.authorize(&user, &attrs);
        match d {
            crate::auth::Decision::Allow => Ok(()),
            crate::auth::Decision::Deny(r) | crate::auth::Decision::NoOpinion(r) => {
                Err(ApiError::forbidden_request(&user.name, &attrs, &r))
            }
        }
    };
    let impersonate = |group: &'static str, resource: &'static str| Attributes {
        verb: "impersonate",
        resource_request: true,
        group,
        resource,
        ..Default::default()
    };
    let mut new_groups: Vec<String> = Vec::new();
    match name
        .strip_prefix("system:serviceaccount:")
        .and_then(|rest| rest.split_once(':'))
    {
        Some((ns, sa)) => {
            check(Attributes {
                namespace: Some(ns),
                name: Some(sa),
                ..impersonate("", "serviceaccounts")
            })?;
            new_groups.push("system:serviceaccounts".into());
            new_groups.push(format!("system:serviceaccounts:{ns}"));
        }
        None => check(Attributes {
            name: Some(name),
            ..impersonate("", "users")
        })?,
    }
    for g in &groups {
        check(Attributes {
            name: Some(g),
            ..impersonate("", "groups")
        })?;
        if !new_groups.iter().any(|x| x == g) {
            new_groups.push(g.to_string());
        }
    }
    if let Some(uid) = uid {
        check(Attributes {
            name: Some(uid),
            ..impersonate("authentication.k8s.io", "uids")
        })?;
    }
    for (key, vals) in &extra {
        for v in vals {
            check(Attributes {
                subresource: Some(key),
                name: Some(v),
                ..impersonate("authentication.k8s.io", "userextras")
            })?;
        }
    }
    let implied = if name == ANONYMOUS {
        UNAUTHENTICATED
    } else {
        AUTHENTICATED
    };
    if !new_groups.iter().any(|g| g == implied) {
        new_groups.push(implied.into());
    }
    Ok(Arc::new(UserInfo {
        name: name.to_string(),
        uid: uid.unwrap_or_default().to_string(),
        groups: new_groups,
        extra,
    }))
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{AlwaysAllow, AlwaysDeny};

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    fn admin() -> Arc<UserInfo> {
        Arc::new(UserInfo {
            name: "admin".into(),
            groups: vec!["system:masters".into()],
            ..Default::default()
        })
    }

    #[test]
    fn acts_as_the_requested_user_and_groups() {
        let h = headers(&[
            ("Impersonate-User", "system:node:n1"),
            ("Impersonate-Group", "system:nodes"),
            ("Impersonate-Extra-Scopes", "view"),
        ]);
        let u = apply(&AlwaysAllow, &h, admin()).unwrap();
        assert_eq!(u.name, "system:node:n1");
        assert_eq!(u.groups, ["system:nodes", "system:authenticated"]);
        assert_eq!(u.extra["scopes"], ["view"]);
        let sa = apply(
            &AlwaysAllow,
            &headers(&[("Impersonate-User", "system:serviceaccount:dev:bot")]),
            admin(),
        )
        .unwrap();
        assert_eq!(
            sa.groups,
            [
                "system:serviceaccounts",
                "system:serviceaccounts:dev",
                "system:authenticated"
            ]
        );
    }

    #[test]
    fn refused_without_the_impersonate_verb() {
        let h = headers(&[("Impersonate-User", "jane")]);
        let e = apply(&AlwaysDeny, &h, admin()).unwrap_err();
        assert_eq!(e.code, 403);
        assert_eq!(
            e.message,
            "users \"jane\" is forbidden: User \"admin\" cannot impersonate resource \"users\" in API group \"\" at the cluster scope: Everything is forbidden."
        );
        let no_user = apply(
            &AlwaysAllow,
            &headers(&[("Impersonate-Group", "g")]),
            admin(),
        );
        assert_eq!(no_user.unwrap_err().code, 500);
        // No impersonation: the caller itself.
        assert_eq!(
            apply(&AlwaysDeny, &HeaderMap::new(), admin()).unwrap().name,
            "admin"
        );
    }
}
