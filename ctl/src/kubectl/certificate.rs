//! `skiffctl certificate approve|deny NAME...`, as kubectl does them: add an `Approved` or
//! `Denied` condition to each CertificateSigningRequest through its `approval` subresource.

use anyhow::anyhow;
use serde_json::{Value, json};

use super::Session;

#[derive(clap::Subcommand, Debug, Clone)]
pub enum CertificateCmd {
    /// Approve certificate signing requests (a signer then issues their certificates).
    Approve(DecisionArgs),
    /// Deny certificate signing requests.
    Deny(DecisionArgs),
}

#[derive(clap::Args, Debug, Clone)]
pub struct DecisionArgs {
    /// The CertificateSigningRequests' names.
    #[arg(required = true)]
    pub names: Vec<String>,
    /// Update a request even if it already has the condition.
    #[arg(long)]
    pub force: bool,
}

/// One of the two decisions, with the words kubectl records and prints for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Approve,
    Deny,
}

impl Decision {
    /// The condition type this decision adds.
    fn condition(self) -> &'static str {
        match self {
            Decision::Approve => "Approved",
            Decision::Deny => "Denied",
        }
    }

    /// The condition type that rules this decision out.
    fn opposite(self) -> &'static str {
        match self {
            Decision::Approve => "Denied",
            Decision::Deny => "Approved",
        }
    }

    fn reason(self) -> &'static str {
        match self {
            Decision::Approve => "KubectlApprove",
            Decision::Deny => "KubectlDeny",
        }
    }

    fn message(self) -> &'static str {
        match self {
            Decision::Approve => "This CSR was approved by kubectl certificate approve.",
            Decision::Deny => "This CSR was denied by kubectl certificate deny.",
        }
    }

    /// The past participle kubectl prints after the object's name.
    fn done(self) -> &'static str {
        match self {
            Decision::Approve => "approved",
            Decision::Deny => "denied",
        }
    }
}

/// What to do with one request.
#[derive(Debug, PartialEq)]
pub enum Change {
    /// Send this object to the `approval` subresource.
    Update(Value),
    /// It already carries the condition: nothing to send (unless `--force`, which sends it as
    /// it is, as kubectl does).
    AlreadyDecided(Value),
}

/// `csr` with `decision`'s condition added, or why not: the opposite condition already there
/// is an error even with `--force` (the apiserver refuses both at once anyway).
pub fn decide(mut csr: Value, decision: Decision, now: &str) -> anyhow::Result<Change> {
    let name = csr["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let conditions = csr["status"]["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut has = false;
    for c in &conditions {
        let t = c["type"].as_str().unwrap_or_default();
        if t == decision.opposite() {
            return Err(anyhow!(
                "certificate signing request \"{name}\" is already {t}"
            ));
        }
        has |= t == decision.condition();
    }
    if has {
        return Ok(Change::AlreadyDecided(csr));
    }
    let mut conditions = conditions;
    conditions.push(json!({
        "type": decision.condition(),
        "status": "True",
        "reason": decision.reason(),
        "message": decision.message(),
        "lastUpdateTime": now,
    }));
    if !csr["status"].is_object() {
        csr["status"] = json!({});
    }
    csr["status"]["conditions"] = Value::Array(conditions);
    Ok(Change::Update(csr))
}

const BASE: &str = "/apis/certificates.k8s.io/v1/certificatesigningrequests";

/// Approves or denies every named request; goes on past a failing one, as kubectl does, and
/// reports all failures at the end.
pub async fn run(s: &Session, cmd: &CertificateCmd) -> anyhow::Result<()> {
    let (decision, args) = match cmd {
        CertificateCmd::Approve(a) => (Decision::Approve, a),
        CertificateCmd::Deny(a) => (Decision::Deny, a),
    };
    let mut errors = Vec::new();
    for name in &args.names {
        match one(s, name, decision, args.force).await {
            Ok(()) => println!(
                "certificatesigningrequest.certificates.k8s.io/{name} {}",
                decision.done()
            ),
            Err(e) => errors.push(error_line(&format!("{e:#}"))),
        }
    }
    if errors.is_empty() {
        return Ok(());
    }
    Err(anyhow!(super::Unprefixed(errors.join("\n"))))
}

/// An error as kubectl prints it: a server's as it came, others after `error: `.
fn error_line(text: &str) -> String {
    if text.starts_with("Error from server") {
        text.to_string()
    } else {
        format!("error: {text}")
    }
}

async fn one(s: &Session, name: &str, decision: Decision, force: bool) -> anyhow::Result<()> {
    let path = format!("{BASE}/{name}");
    // Someone else (an approver, a signer) may write the request between our read and our
    // write: read again and retry on a conflict, as kubectl does (ten times).
    for attempt in 0.. {
        let csr = s.get_json(&path, "application/json").await?;
        let now = jiff::Timestamp::now()
            .round(jiff::Unit::Second)?
            .strftime("%Y-%m-%dT%H:%M:%SZ")
            .to_string();
        let body = match decide(csr, decision, &now)? {
            Change::Update(obj) => obj,
            Change::AlreadyDecided(obj) if force => obj,
            Change::AlreadyDecided(_) => return Ok(()),
        };
        match s
            .send(
                http::Method::PUT,
                &format!("{path}/approval"),
                "application/json",
                Some(&body),
            )
            .await
        {
            Err(e) if attempt < 10 && e.to_string().starts_with("Error from server (Conflict)") => {
                continue;
            }
            other => return other.map(|_| ()),
        }
    }
    unreachable!("the retry loop returns")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn csr(conditions: Value) -> Value {
        json!({"metadata": {"name": "n1"}, "spec": {}, "status": {"conditions": conditions}})
    }

    #[test]
    fn approving_a_pending_request_adds_kubectls_condition() {
        let Change::Update(obj) =
            decide(json!({"metadata": {"name": "n1"}}), Decision::Approve, "T").unwrap()
        else {
            panic!("no update");
        };
        assert_eq!(
            obj["status"]["conditions"],
            json!([{
                "type": "Approved", "status": "True", "reason": "KubectlApprove",
                "message": "This CSR was approved by kubectl certificate approve.",
                "lastUpdateTime": "T",
            }])
        );
    }

    #[test]
    fn a_request_with_the_condition_is_left_alone_and_the_opposite_is_an_error() {
        let approved = csr(json!([{"type": "Approved", "status": "True"}]));
        assert_eq!(
            decide(approved.clone(), Decision::Approve, "T").unwrap(),
            Change::AlreadyDecided(approved.clone())
        );
        assert_eq!(
            decide(approved, Decision::Deny, "T")
                .unwrap_err()
                .to_string(),
            "certificate signing request \"n1\" is already Approved"
        );
        let denied = csr(json!([{"type": "Denied", "status": "True"}]));
        assert_eq!(
            decide(denied, Decision::Approve, "T")
                .unwrap_err()
                .to_string(),
            "certificate signing request \"n1\" is already Denied"
        );
    }
}
