//! CertificateSigningRequests (`certificates.k8s.io/v1`): reading the PKCS#10 request a CSR
//! carries, the built-in signer names, and the rules its strategy applies (validation with
//! upstream's wording, which conditions an update may change).

use base64::Engine;
use serde_json::{Value, json};
use x509_parser::prelude::FromDer;

use crate::FieldError;
use crate::validation as v;

/// Client certificates for kubelets talking to the apiserver (TLS bootstrapping).
pub const KUBELET_CLIENT_SIGNER: &str = "kubernetes.io/kube-apiserver-client-kubelet";
/// Client certificates for any user of the apiserver; never auto-approved.
pub const CLIENT_SIGNER: &str = "kubernetes.io/kube-apiserver-client";
/// Kubelets' serving certificates.
pub const KUBELET_SERVING_SIGNER: &str = "kubernetes.io/kubelet-serving";

/// Every key usage a request may name (upstream's `KeyUsage` values, sorted as its
/// `NotSupported` message lists them).
pub const USAGES: &[&str] = &[
    "any",
    "cert sign",
    "client auth",
    "code signing",
    "content commitment",
    "crl sign",
    "data encipherment",
    "decipher only",
    "digital signature",
    "email protection",
    "encipher only",
    "ipsec end system",
    "ipsec tunnel",
    "ipsec user",
    "key agreement",
    "key encipherment",
    "microsoft sgc",
    "netscape sgc",
    "ocsp signing",
    "s/mime",
    "server auth",
    "signing",
    "timestamping",
];

/// What a signer or an approver needs from a PKCS#10 request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Request {
    /// The subject's common name (the user a client certificate names).
    pub common_name: String,
    /// The subject's organizations (the user's groups).
    pub organizations: Vec<String>,
    pub dns_names: Vec<String>,
    pub ip_addresses: Vec<std::net::IpAddr>,
    pub email_addresses: Vec<String>,
    pub uris: Vec<String>,
    /// The request's DER bytes (for a signer to build a certificate from).
    pub der: Vec<u8>,
}

/// Why a request is not a usable PKCS#10 request; the texts are upstream's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("PEM block type must be CERTIFICATE REQUEST")]
    NotPem,
    #[error("x509: malformed certificate request: {0}")]
    Malformed(String),
    #[error("x509: invalid signature: {0}")]
    Signature(String),
}

/// Parses a PEM `CERTIFICATE REQUEST` and checks its self-signature, as upstream's
/// `ParseCSR` plus `CheckSignature`.
pub fn parse_request(pem: &[u8]) -> Result<Request, RequestError> {
    let (_, block) = x509_parser::pem::parse_x509_pem(pem).map_err(|_| RequestError::NotPem)?;
    if block.label != "CERTIFICATE REQUEST" {
        return Err(RequestError::NotPem);
    }
    let (_, csr) =
        x509_parser::certification_request::X509CertificationRequest::from_der(&block.contents)
            .map_err(|e| RequestError::Malformed(e.to_string()))?;
    csr.verify_signature()
        .map_err(|e| RequestError::Signature(e.to_string()))?;
    let info = &csr.certification_request_info;
    let mut out = Request {
        common_name: info
            .subject
            .iter_common_name()
            .filter_map(|a| a.as_str().ok())
            .next()
            .unwrap_or_default()
            .to_string(),
        organizations: info
            .subject
            .iter_organization()
            .filter_map(|a| a.as_str().ok().map(str::to_string))
            .collect(),
        der: block.contents.clone(),
        ..Request::default()
    };
    for ext in csr.requested_extensions().into_iter().flatten() {
        if let x509_parser::extensions::ParsedExtension::SubjectAlternativeName(san) = ext {
            for name in &san.general_names {
                use x509_parser::extensions::GeneralName;
                match name {
                    GeneralName::DNSName(d) => out.dns_names.push(d.to_string()),
                    GeneralName::RFC822Name(e) => out.email_addresses.push(e.to_string()),
                    GeneralName::URI(u) => out.uris.push(u.to_string()),
                    GeneralName::IPAddress(b) => {
                        if let Ok(a) = <[u8; 4]>::try_from(*b) {
                            out.ip_addresses.push(a.into());
                        } else if let Ok(a) = <[u8; 16]>::try_from(*b) {
                            out.ip_addresses.push(a.into());
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    Ok(out)
}

/// The usages a kubelet client certificate has: client auth and digital signature, with key
/// encipherment for RSA keys (upstream's `kubeletClientRequiredUsages` and its no-RSA form).
const KUBELET_CLIENT_USAGES: [&[&str]; 2] = [
    &["client auth", "digital signature", "key encipherment"],
    &["client auth", "digital signature"],
];
const KUBELET_SERVING_USAGES: [&[&str]; 2] = [
    &["digital signature", "key encipherment", "server auth"],
    &["digital signature", "server auth"],
];

/// Whether `usages` is, as a set, one of `allowed`.
fn usages_match(usages: &[String], allowed: [&[&str]; 2]) -> bool {
    let mut set: Vec<&str> = usages.iter().map(String::as_str).collect();
    set.sort_unstable();
    set.dedup();
    allowed.iter().any(|a| set == *a)
}

fn nodes_group_and_name(req: &Request) -> Result<(), String> {
    if req.organizations != ["system:nodes"] {
        return Err("subject organization is not system:nodes".into());
    }
    if !req.common_name.starts_with("system:node:") {
        return Err("subject common name does not begin with system:node:".into());
    }
    Ok(())
}

/// Whether a request is a kubelet's client certificate (`CN=system:node:<name>`,
/// `O=system:nodes`, no alternative names, client usages), as upstream's
/// `ValidateKubeletClientCSR`; the error says what is wrong.
pub fn check_kubelet_client(req: &Request, usages: &[String]) -> Result<(), String> {
    nodes_group_and_name(req)?;
    if !req.dns_names.is_empty() {
        return Err("dnsNames are not allowed".into());
    }
    if !req.email_addresses.is_empty() {
        return Err("email addresses are not allowed".into());
    }
    if !req.ip_addresses.is_empty() {
        return Err("IP addresses are not allowed".into());
    }
    if !req.uris.is_empty() {
        return Err("URIs are not allowed".into());
    }
    if !usages_match(usages, KUBELET_CLIENT_USAGES) {
        return Err(format!(
            "usages did not match {:?}",
            KUBELET_CLIENT_USAGES[0]
        ));
    }
    Ok(())
}

/// Whether a request is a kubelet's serving certificate (node subject, a DNS or IP name, no
/// email or URI names, serving usages), as upstream's `ValidateKubeletServingCSR`.
pub fn check_kubelet_serving(req: &Request, usages: &[String]) -> Result<(), String> {
    nodes_group_and_name(req)?;
    if req.dns_names.is_empty() && req.ip_addresses.is_empty() {
        return Err("DNS or IP subjectAltName is required".into());
    }
    if !req.email_addresses.is_empty() {
        return Err("Email subjectAltNames are forbidden".into());
    }
    if !req.uris.is_empty() {
        return Err("URI subjectAltNames are forbidden".into());
    }
    if !usages_match(usages, KUBELET_SERVING_USAGES) {
        return Err(format!(
            "usages did not match {:?}",
            KUBELET_SERVING_USAGES[0]
        ));
    }
    Ok(())
}

/// Whether a request suits `signer`, one of the three built-in signers the controller-manager
/// signs for; `Err` says why not (upstream's signer checks).
pub fn check_for_signer(signer: &str, req: &Request, usages: &[String]) -> Result<(), String> {
    match signer {
        KUBELET_CLIENT_SIGNER => check_kubelet_client(req, usages),
        KUBELET_SERVING_SIGNER => check_kubelet_serving(req, usages),
        CLIENT_SIGNER => {
            const ALLOWED: &[&str] = &["client auth", "digital signature", "key encipherment"];
            match usages.iter().find(|u| !ALLOWED.contains(&u.as_str())) {
                Some(u) => Err(format!("invalid usage for client certificate: {u}")),
                None => Ok(()),
            }
        }
        other => Err(format!("unknown signerName {other:?}")),
    }
}

/// The PEM bytes of a CSR's `spec.request` (base64 in JSON); empty when absent or not base64.
pub fn request_pem(csr: &Value) -> Vec<u8> {
    csr.pointer("/spec/request")
        .and_then(Value::as_str)
        .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
        .unwrap_or_default()
}

/// Whether the CSR has a condition of type `kind` (`Approved`, `Denied`, `Failed`).
pub fn has_condition(csr: &Value, kind: &str) -> bool {
    conditions(csr).iter().any(|c| c["type"] == kind)
}

fn conditions(csr: &Value) -> &[Value] {
    csr.pointer("/status/conditions")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// Go's `%#v` of a byte slice, as upstream's field errors print `spec.request`.
fn go_bytes(b: &[u8]) -> String {
    let parts: Vec<String> = b.iter().map(|x| format!("{x:#x}")).collect();
    format!("[]byte{{{}}}", parts.join(", "))
}

/// Validates a CSR (create and every update), as upstream's
/// `ValidateCertificateSigningRequestCreate`.
pub fn validate(csr: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let pem = request_pem(csr);
    if let Err(e) = parse_request(&pem) {
        errs.push(FieldError {
            kind: crate::FieldErrorKind::Invalid,
            field: "spec.request".into(),
            value: Some(go_bytes(&pem)),
            detail: e.to_string(),
        });
    }
    let usages = csr
        .pointer("/spec/usages")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    if usages.is_empty() {
        errs.push(FieldError::required(
            "spec.usages",
            "usages must be provided",
        ));
    }
    let mut seen = std::collections::HashSet::new();
    for (i, u) in usages.iter().enumerate() {
        let s = u.as_str().unwrap_or_default();
        if !USAGES.contains(&s) {
            errs.push(FieldError::not_supported(
                format!("spec.usages[{i}]"),
                u,
                USAGES,
            ));
        } else if !seen.insert(s) {
            errs.push(FieldError::duplicate(format!("spec.usages[{i}]"), u));
        }
    }
    validate_signer_name(
        csr.pointer("/spec/signerName")
            .and_then(Value::as_str)
            .unwrap_or_default(),
        &mut errs,
    );
    if let Some(secs) = csr
        .pointer("/spec/expirationSeconds")
        .and_then(Value::as_i64)
        && secs < 600
    {
        errs.push(FieldError::invalid(
            "spec.expirationSeconds",
            &json!(secs),
            "may not specify a duration less than 600 seconds (10 minutes)",
        ));
    }
    validate_conditions(csr, &mut errs);
    errs
}

fn validate_signer_name(name: &str, errs: &mut Vec<FieldError>) {
    const FIELD: &str = "spec.signerName";
    if name.is_empty() {
        errs.push(FieldError::required(FIELD, ""));
        return;
    }
    let Some((domain, path)) = name.split_once('/') else {
        errs.push(FieldError::invalid(
            FIELD,
            &json!(name),
            "must be a fully qualified domain and path of the form 'example.com/signer-name'",
        ));
        return;
    };
    if !domain.contains('.') {
        errs.push(FieldError::invalid(
            FIELD,
            &json!(domain),
            "should be a domain with at least two segments separated by dots",
        ));
    }
    for m in v::is_dns1123_subdomain(domain) {
        errs.push(FieldError::invalid(FIELD, &json!(domain), m));
    }
    if path.is_empty() {
        errs.push(FieldError::invalid(
            FIELD,
            &json!(name),
            "validating path: must not be empty",
        ));
    }
    for m in v::is_path_segment_name(path) {
        errs.push(FieldError::invalid(FIELD, &json!(path), m));
    }
}

fn validate_conditions(csr: &Value, errs: &mut Vec<FieldError>) {
    let mut seen = std::collections::HashSet::new();
    for (i, c) in conditions(csr).iter().enumerate() {
        let p = format!("status.conditions[{i}]");
        let kind = c["type"].as_str().unwrap_or_default();
        if kind.is_empty() {
            errs.push(FieldError::required(format!("{p}.type"), ""));
        }
        let status = c["status"].as_str().unwrap_or_default();
        if matches!(kind, "Approved" | "Denied") && status != "True" {
            errs.push(FieldError::not_supported(
                format!("{p}.status"),
                &c["status"],
                &["True"],
            ));
        } else if !matches!(status, "True" | "False" | "Unknown") {
            errs.push(FieldError::not_supported(
                format!("{p}.status"),
                &c["status"],
                &["False", "True", "Unknown"],
            ));
        }
        if matches!(kind, "Approved" | "Denied" | "Failed") && !seen.insert(kind) {
            errs.push(FieldError::duplicate(format!("{p}.type"), &c["type"]));
        }
    }
    if seen.contains("Approved") && seen.contains("Denied") {
        errs.push(FieldError::invalid(
            "status.conditions",
            &json!("Denied"),
            "Approved and Denied conditions are mutually exclusive",
        ));
    }
}

/// What an update of a CSR may not do, whatever the subresource: drop an `Approved` or
/// `Denied` condition, or change an issued certificate (checked besides [`validate`]).
pub fn validate_update(new: &Value, old: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for kind in ["Approved", "Denied"] {
        if has_condition(old, kind) && !has_condition(new, kind) {
            errs.push(FieldError::forbidden(
                "status.conditions",
                format!("updates may not remove a condition of type {kind:?}"),
            ));
        }
    }
    let cert = |o: &Value| {
        o.pointer("/status/certificate")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    if !cert(old).is_empty() && cert(new) != cert(old) {
        errs.push(FieldError::forbidden(
            "status.certificate",
            "updates may not modify existing certificate content",
        ));
    }
    errs
}

/// Applies an update to `old`, as upstream's three CSR strategies: the main resource changes
/// only metadata (spec and status are kept), `approval` only the conditions, `status` only
/// the status without adding or removing `Approved`/`Denied` conditions. Conditions get
/// `status: True` when they have none and `lastUpdateTime`/`lastTransitionTime` when a client
/// left them out.
pub fn prepare_update(sub: Option<&str>, new: &mut Value, old: &Value, now: &str) {
    let approval_of = |o: &Value| -> Vec<Value> {
        conditions(o)
            .iter()
            .filter(|c| matches!(c["type"].as_str(), Some("Approved" | "Denied")))
            .cloned()
            .collect()
    };
    match sub {
        Some("approval") => {
            let conds = conditions(new).to_vec();
            let mut r = old.clone();
            r["metadata"] = new["metadata"].clone();
            r["status"]["conditions"] = json!(conds);
            *new = r;
        }
        Some("status") => {
            let keep = approval_of(old);
            let mut conds: Vec<Value> = conditions(new)
                .iter()
                .filter(|c| !matches!(c["type"].as_str(), Some("Approved" | "Denied")))
                .cloned()
                .collect();
            conds.splice(0..0, keep);
            new["spec"] = old["spec"].clone();
            if !new["status"].is_object() {
                new["status"] = json!({});
            }
            new["status"]["conditions"] = json!(conds);
        }
        _ => {
            new["spec"] = old["spec"].clone();
            match old.get("status") {
                Some(s) => new["status"] = s.clone(),
                None => {
                    if let Some(m) = new.as_object_mut() {
                        m.remove("status");
                    }
                }
            }
        }
    }
    if let Some(conds) = new
        .pointer_mut("/status/conditions")
        .and_then(Value::as_array_mut)
    {
        if conds.is_empty() {
            if let Some(st) = new["status"].as_object_mut() {
                st.remove("conditions");
            }
            return;
        }
        for c in conds {
            let Some(c) = c.as_object_mut() else { continue };
            if c.get("status")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .is_empty()
            {
                c.insert("status".into(), json!("True"));
            }
            for t in ["lastUpdateTime", "lastTransitionTime"] {
                if c.get(t)
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .is_empty()
                {
                    c.insert(t.into(), json!(now));
                }
            }
        }
    }
}

/// Sets the requester fields of a new CSR from the authenticated user, as upstream's
/// `PrepareForCreate`: whatever the client put in `spec.username`, `uid`, `groups` and `extra`
/// is replaced, and the status is cleared.
pub fn prepare_create(
    csr: &mut Value,
    username: &str,
    uid: &str,
    groups: &[String],
    extra: &std::collections::BTreeMap<String, Vec<String>>,
) {
    if !csr["spec"].is_object() {
        csr["spec"] = json!({});
    }
    let spec = csr["spec"].as_object_mut().expect("object");
    for k in ["username", "uid", "groups", "extra"] {
        spec.remove(k);
    }
    if !username.is_empty() {
        spec.insert("username".into(), json!(username));
    }
    if !uid.is_empty() {
        spec.insert("uid".into(), json!(uid));
    }
    if !groups.is_empty() {
        spec.insert("groups".into(), json!(groups));
    }
    if !extra.is_empty() {
        spec.insert("extra".into(), json!(extra));
    }
    csr["status"] = json!({});
}

#[cfg(test)]
mod tests;
