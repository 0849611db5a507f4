//! The CSR strategy's rules: what a request must be, the signer name's form, exclusive
//! approval conditions, what each update may change.

use base64::Engine;
use serde_json::{Value, json};

use super::*;

/// A PEM request for `cn` in groups `orgs`, with DNS names `dns`.
fn pem(cn: &str, orgs: &[&str], dns: &[&str]) -> String {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params =
        rcgen::CertificateParams::new(dns.iter().map(|s| s.to_string()).collect::<Vec<_>>())
            .unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, cn);
    for o in orgs {
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, *o);
    }
    params.serialize_request(&key).unwrap().pem().unwrap()
}

fn csr(request: &str) -> Value {
    json!({
        "apiVersion": "certificates.k8s.io/v1",
        "kind": "CertificateSigningRequest",
        "metadata": {"name": "c"},
        "spec": {
            "request": base64::engine::general_purpose::STANDARD.encode(request),
            "signerName": KUBELET_CLIENT_SIGNER,
            "usages": ["digital signature", "client auth"],
        },
    })
}

fn messages(errs: &[FieldError]) -> Vec<String> {
    errs.iter().map(FieldError::message).collect()
}

#[test]
fn a_request_names_its_subject_and_alt_names() {
    let r = parse_request(pem("system:node:n1", &["system:nodes"], &["n1.example"]).as_bytes())
        .unwrap();
    assert_eq!(r.common_name, "system:node:n1");
    assert_eq!(r.organizations, ["system:nodes"]);
    assert_eq!(r.dns_names, ["n1.example"]);
    assert!(r.ip_addresses.is_empty() && r.email_addresses.is_empty());
    assert_eq!(parse_request(b"nonsense"), Err(RequestError::NotPem));
    let cert = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
    assert_eq!(parse_request(cert.as_bytes()), Err(RequestError::NotPem));
}

#[test]
fn a_valid_csr_passes_and_broken_ones_say_why_as_upstream() {
    let good = csr(&pem("system:node:n1", &["system:nodes"], &[]));
    assert_eq!(messages(&validate(&good)), Vec::<String>::new());

    let mut bad = good.clone();
    bad["spec"]["request"] = json!(base64::engine::general_purpose::STANDARD.encode("-"));
    assert_eq!(
        messages(&validate(&bad)),
        ["spec.request: Invalid value: []byte{0x2d}: PEM block type must be CERTIFICATE REQUEST"]
    );

    let mut bad = good.clone();
    bad["spec"]["signerName"] = json!("nodomain");
    bad["spec"]["usages"] = json!(["client auth", "flying", "client auth"]);
    bad["spec"]["expirationSeconds"] = json!(60);
    let m = messages(&validate(&bad));
    assert!(
        m[0].starts_with(
            "spec.usages[1]: Unsupported value: \"flying\": supported values: \"any\", "
        ),
        "{m:?}"
    );
    assert_eq!(
        m[1..],
        [
            "spec.usages[2]: Duplicate value: \"client auth\"",
            "spec.signerName: Invalid value: \"nodomain\": must be a fully qualified domain and path of the form 'example.com/signer-name'",
            "spec.expirationSeconds: Invalid value: 60: may not specify a duration less than 600 seconds (10 minutes)",
        ]
    );

    let mut bad = good.clone();
    bad["spec"].as_object_mut().unwrap().remove("signerName");
    bad["spec"]["usages"] = json!([]);
    assert_eq!(
        messages(&validate(&bad)),
        [
            "spec.usages: Required value: usages must be provided",
            "spec.signerName: Required value",
        ]
    );
}

#[test]
fn approved_and_denied_exclude_each_other() {
    let mut c = csr(&pem("u", &[], &[]));
    c["status"] = json!({"conditions": [
        {"type": "Approved", "status": "True"},
        {"type": "Denied", "status": "True"},
    ]});
    assert_eq!(
        messages(&validate(&c)),
        [
            "status.conditions: Invalid value: \"Denied\": Approved and Denied conditions are mutually exclusive"
        ]
    );
    c["status"] = json!({"conditions": [{"type": "Approved", "status": "False"}]});
    assert_eq!(
        messages(&validate(&c)),
        ["status.conditions[0].status: Unsupported value: \"False\": supported values: \"True\""]
    );
}

#[test]
fn each_update_changes_only_its_part() {
    let old = {
        let mut c = csr(&pem("u", &[], &[]));
        c["spec"]["username"] = json!("alice");
        c["status"] = json!({});
        c
    };
    let now = "2026-01-01T00:00:00Z";

    // The main resource: spec and status stay.
    let mut new = old.clone();
    new["spec"]["username"] = json!("mallory");
    new["status"] = json!({"certificate": "Zm9v"});
    new["metadata"]["labels"] = json!({"a": "b"});
    prepare_update(None, &mut new, &old, now);
    assert_eq!(new["spec"], old["spec"]);
    assert_eq!(new["status"], json!({}));
    assert_eq!(new["metadata"]["labels"], json!({"a": "b"}));

    // approval: only the conditions, defaulted and stamped.
    let mut new = old.clone();
    new["spec"]["username"] = json!("mallory");
    new["status"] =
        json!({"certificate": "Zm9v", "conditions": [{"type": "Approved", "reason": "OK"}]});
    prepare_update(Some("approval"), &mut new, &old, now);
    assert_eq!(new["spec"], old["spec"]);
    assert_eq!(
        new["status"],
        json!({"conditions": [{"type": "Approved", "reason": "OK", "status": "True",
            "lastUpdateTime": now, "lastTransitionTime": now}]})
    );

    // status: the certificate, but approval stays as it was.
    let approved = new;
    let mut new = approved.clone();
    new["status"] = json!({"certificate": "Zm9v"});
    prepare_update(Some("status"), &mut new, &approved, now);
    assert_eq!(new["status"]["certificate"], "Zm9v");
    assert_eq!(
        new["status"]["conditions"],
        approved["status"]["conditions"]
    );

    // Neither may take back an approval or change an issued certificate.
    let mut taken_back = new.clone();
    taken_back["status"] = json!({"certificate": "YmFy"});
    assert_eq!(
        messages(&validate_update(&taken_back, &new)),
        [
            "status.conditions: Forbidden: updates may not remove a condition of type \"Approved\"",
            "status.certificate: Forbidden: updates may not modify existing certificate content",
        ]
    );
}

#[test]
fn create_records_the_requester_and_clears_the_status() {
    let mut c = csr(&pem("u", &[], &[]));
    c["spec"]["username"] = json!("someone-else");
    c["status"] = json!({"certificate": "Zm9v"});
    let extra = [("k".to_string(), vec!["v".to_string()])].into();
    prepare_create(&mut c, "alice", "", &["team".to_string()], &extra);
    assert_eq!(c["spec"]["username"], "alice");
    assert_eq!(c["spec"]["groups"], json!(["team"]));
    assert_eq!(c["spec"]["extra"], json!({"k": ["v"]}));
    assert!(c["spec"].get("uid").is_none());
    assert_eq!(c["status"], json!({}));
}
