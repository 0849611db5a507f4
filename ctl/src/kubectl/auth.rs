//! `skiffctl auth can-i` and `skiffctl auth whoami`: the caller's permissions (through
//! SelfSubjectAccessReview and SelfSubjectRulesReview) and identity (SelfSubjectReview), asked
//! of the apiserver and printed as kubectl prints them.

use anyhow::{anyhow, bail};
use clap::Subcommand;
use serde_json::{Value, json};

use super::objects::{Output, Shape};
use super::{Session, resources};

#[derive(Subcommand, Debug, Clone)]
pub enum AuthCmd {
    /// Check whether an action is allowed: `can-i VERB [TYPE | TYPE/NAME | NONRESOURCEURL]`,
    /// or `can-i --list`.
    #[command(name = "can-i")]
    CanI(CanIArgs),
    /// Print who the apiserver takes you for (user name, UID, groups, extra).
    Whoami {
        /// Output format: json or yaml (default: a table).
        #[arg(short = 'o', long)]
        output: Option<String>,
    },
}

#[derive(clap::Args, Debug, Clone)]
pub struct CanIArgs {
    /// VERB [TYPE | TYPE/NAME | NONRESOURCEURL]
    pub args: Vec<String>,
    /// Check the action in all namespaces.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// Print nothing; only the exit code answers.
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// A subresource such as `log` (pods/log) or `scale` (deployments/scale).
    #[arg(long, default_value = "")]
    pub subresource: String,
    /// Print every allowed action.
    #[arg(long)]
    pub list: bool,
    /// With --list, leave out the header line.
    #[arg(long)]
    pub no_headers: bool,
}

/// The verbs kubectl knows for resources and for non-resource URLs (others get a warning).
const RESOURCE_VERBS: &[&str] = &[
    "get",
    "list",
    "watch",
    "create",
    "update",
    "patch",
    "delete",
    "deletecollection",
    "use",
    "bind",
    "impersonate",
    "*",
    "approve",
    "sign",
    "escalate",
    "attest",
];
const NON_RESOURCE_VERBS: &[&str] = &[
    "get", "put", "post", "head", "options", "delete", "patch", "*",
];

/// What `can-i` asks about, as the positional arguments say.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Question {
    List,
    NonResource {
        verb: String,
        path: String,
    },
    Resource {
        verb: String,
        /// The resource as typed (`deploy`, `jobs.batch`, `*`), resolved through discovery.
        resource: String,
        name: String,
    },
}

fn question(a: &CanIArgs) -> anyhow::Result<Question> {
    if a.list {
        if !a.args.is_empty() {
            bail!("list option must be specified with no arguments");
        }
        if a.quiet || a.all_namespaces || !a.subresource.is_empty() {
            bail!(
                "list option can't be specified with neither quiet, all-namespaces nor subresource options"
            );
        }
        return Ok(Question::List);
    }
    let [verb, what] = a.args.as_slice() else {
        bail!(
            "you must specify two arguments: verb resource or verb resource/resourceName.\nSee 'skiffctl auth can-i -h' for help and examples."
        );
    };
    if what.starts_with('/') {
        if !a.subresource.is_empty() {
            bail!("--subresource can not be used with NonResourceURL");
        }
        return Ok(Question::NonResource {
            verb: verb.clone(),
            path: what.clone(),
        });
    }
    let (resource, name) = what.split_once('/').unwrap_or((what, ""));
    Ok(Question::Resource {
        verb: verb.clone(),
        resource: resource.to_string(),
        name: name.to_string(),
    })
}

async fn post(s: &Session, path: &str, body: &Value) -> anyhow::Result<Value> {
    s.send(http::Method::POST, path, "application/json", Some(body))
        .await
}

/// A warning as kubectl's warning printer writes it (kubectl's own texts for `can-i` end in a
/// newline, so they come out followed by an empty line; kept, as scripts may match them).
fn warn(text: &str) {
    eprintln!("Warning: {text}");
}

/// (group, resource) for what the user typed, and whether it is namespaced (None: unknown).
/// As kubectl: `*` stays as is, an unknown type is asked about as typed, after a warning
/// (except `users` and `groups`, which are only ever impersonated).
fn resolve(all: &[resources::Resource], word: &str) -> (String, String, Option<bool>) {
    if word == "*" {
        return (String::new(), "*".into(), Some(true));
    }
    let lower = word.to_lowercase();
    match resources::resolve(all, &lower) {
        Ok(found) if found.len() == 1 && !found[0].categories.contains(&lower) => {
            let r = found[0];
            (r.group.clone(), r.plural.clone(), Some(r.namespaced))
        }
        _ => {
            let (resource, group) = lower.split_once('.').unwrap_or((&lower, ""));
            if !["users", "groups"].contains(&lower.as_str()) {
                if group.is_empty() {
                    warn(&format!(
                        "the server doesn't have a resource type '{resource}'\n"
                    ));
                } else {
                    warn(&format!(
                        "the server doesn't have a resource type '{resource}' in group '{group}'\n"
                    ));
                }
            }
            (String::new(), word.to_string(), None)
        }
    }
}

/// What `can-i` prints for a SelfSubjectAccessReview's status: `yes`, or `no` with the
/// reason and evaluation error when there are any.
pub fn verdict(status: &Value) -> (bool, String) {
    if status["allowed"].as_bool() == Some(true) {
        return (true, "yes\n".into());
    }
    let mut line = "no".to_string();
    for key in ["reason", "evaluationError"] {
        if let Some(s) = status[key].as_str().filter(|s| !s.is_empty()) {
            line.push_str(" - ");
            line.push_str(s);
        }
    }
    line.push('\n');
    (false, line)
}

/// `can-i`: the exit code (0 yes, 1 no).
pub async fn can_i(s: &Session, a: &CanIArgs) -> anyhow::Result<i32> {
    let q = question(a)?;
    let namespace = if a.all_namespaces {
        String::new()
    } else {
        s.namespace.clone()
    };
    let spec = match q {
        Question::List => {
            let review = json!({
                "apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectRulesReview",
                "metadata": {}, "spec": { "namespace": namespace }
            });
            let got = post(
                s,
                "/apis/authorization.k8s.io/v1/selfsubjectrulesreviews",
                &review,
            )
            .await?;
            let status = &got["status"];
            if status["incomplete"].as_bool() == Some(true) {
                warn(&format!(
                    "the list may be incomplete: {}",
                    status["evaluationError"].as_str().unwrap_or_default()
                ));
            }
            print!("{}", rules_table(status, !a.no_headers));
            return Ok(0);
        }
        Question::NonResource { verb, path } => {
            if a.no_headers {
                bail!("--no-headers cannot be set without --list specified");
            }
            if !NON_RESOURCE_VERBS.contains(&verb.as_str()) {
                warn(&format!("verb '{verb}' is not a known verb\n"));
            }
            json!({ "nonResourceAttributes": { "path": path, "verb": verb } })
        }
        Question::Resource {
            verb,
            resource,
            name,
        } => {
            let all = resources::discover(s).await?;
            let (group, resource, namespaced) = resolve(&all, &resource);
            if !a.all_namespaces && namespaced == Some(false) {
                if group.is_empty() {
                    warn(&format!("resource '{resource}' is not namespace scoped\n"));
                } else {
                    warn(&format!(
                        "resource '{resource}' is not namespace scoped in group '{group}'\n"
                    ));
                }
            }
            if !RESOURCE_VERBS.contains(&verb.as_str()) {
                warn(&format!("verb '{verb}' is not a known verb\n"));
            }
            if a.no_headers {
                bail!("--no-headers cannot be set without --list specified");
            }
            let mut attrs = serde_json::Map::new();
            for (key, value) in [
                ("namespace", &namespace),
                ("verb", &verb),
                ("group", &group),
                ("resource", &resource),
                ("subresource", &a.subresource),
                ("name", &name),
            ] {
                if !value.is_empty() {
                    attrs.insert(key.into(), json!(value));
                }
            }
            json!({ "resourceAttributes": attrs })
        }
    };
    let review = json!({
        "apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
        "metadata": {}, "spec": spec
    });
    let got = post(
        s,
        "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
        &review,
    )
    .await?;
    let (allowed, line) = verdict(&got["status"]);
    if !a.quiet {
        print!("{line}");
    }
    Ok(if allowed { 0 } else { 1 })
}

/// One RBAC rule, as kubectl's `can-i --list` breaks rules down, merges and sorts them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Rule {
    verbs: Vec<String>,
    api_groups: Vec<String>,
    resources: Vec<String>,
    resource_names: Vec<String>,
    non_resource_urls: Vec<String>,
}

/// `[a b]`: a list as Go's `%v` prints it.
fn go_list(items: &[String]) -> String {
    format!("[{}]", items.join(" "))
}

impl Rule {
    /// The text kubectl sorts rules by (the generated `PolicyRule.String()`), so rows come out
    /// in the same order: by verbs first, then groups, resources, names and URLs.
    fn sort_key(&self) -> String {
        format!(
            "&PolicyRule{{Verbs:{},APIGroups:{},Resources:{},ResourceNames:{},NonResourceURLs:{},}}",
            go_list(&self.verbs),
            go_list(&self.api_groups),
            go_list(&self.resources),
            go_list(&self.resource_names),
            go_list(&self.non_resource_urls)
        )
    }

    /// The rule as rules of one group, resource, verb and name (or one URL and verb).
    fn breakdown(&self) -> Vec<Rule> {
        let one = |s: &String| vec![s.clone()];
        let mut out = Vec::new();
        for group in &self.api_groups {
            for resource in &self.resources {
                for verb in &self.verbs {
                    let base = Rule {
                        verbs: one(verb),
                        api_groups: one(group),
                        resources: one(resource),
                        ..Rule::default()
                    };
                    if self.resource_names.is_empty() {
                        out.push(base);
                    } else {
                        for name in &self.resource_names {
                            out.push(Rule {
                                resource_names: one(name),
                                ..base.clone()
                            });
                        }
                    }
                }
            }
        }
        for url in &self.non_resource_urls {
            for verb in &self.verbs {
                out.push(Rule {
                    verbs: one(verb),
                    non_resource_urls: one(url),
                    ..Rule::default()
                });
            }
        }
        out
    }

    /// Resources/Non-Resource URLs/Resource Names/Verbs, as kubectl prints a rule's row:
    /// `deployments.apps/scale`, `[/healthz]`, `[web]`, `[get list]`.
    fn row(&self) -> Vec<String> {
        let resource = match self.resources.first() {
            None => String::new(),
            Some(r) => {
                let (name, sub) = match r.split_once('/') {
                    Some((n, s)) => (n, Some(s)),
                    None => (r.as_str(), None),
                };
                let mut text = name.to_string();
                if let Some(g) = self.api_groups.first().filter(|g| !g.is_empty()) {
                    text.push('.');
                    text.push_str(g);
                }
                if let Some(sub) = sub {
                    text.push('/');
                    text.push_str(sub);
                }
                text
            }
        };
        vec![
            resource,
            go_list(&self.non_resource_urls),
            go_list(&self.resource_names),
            go_list(&self.verbs),
        ]
    }
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .map(|s| s.as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// The rules of a SubjectRulesReviewStatus broken down to one verb each, the rules for one
/// group, resource and name merged (their verbs in the order met), and sorted as kubectl
/// sorts them.
fn compact(status: &Value) -> Vec<Rule> {
    let mut rules = Vec::new();
    for r in status["resourceRules"].as_array().into_iter().flatten() {
        rules.push(Rule {
            verbs: strings(&r["verbs"]),
            api_groups: strings(&r["apiGroups"]),
            resources: strings(&r["resources"]),
            resource_names: strings(&r["resourceNames"]),
            non_resource_urls: Vec::new(),
        });
    }
    for r in status["nonResourceRules"].as_array().into_iter().flatten() {
        rules.push(Rule {
            verbs: strings(&r["verbs"]),
            non_resource_urls: strings(&r["nonResourceURLs"]),
            ..Rule::default()
        });
    }
    let mut merged: Vec<Rule> = Vec::new();
    let mut others: Vec<Rule> = Vec::new();
    for rule in rules.iter().flat_map(Rule::breakdown) {
        if !rule.non_resource_urls.is_empty() {
            // URL rules are never merged: kubectl keeps each (duplicates too).
            others.push(rule);
            continue;
        }
        match merged.iter_mut().find(|m| {
            m.api_groups == rule.api_groups
                && m.resources == rule.resources
                && m.resource_names == rule.resource_names
        }) {
            Some(m) => {
                for v in rule.verbs {
                    if !m.verbs.contains(&v) {
                        m.verbs.push(v);
                    }
                }
            }
            None => merged.push(rule),
        }
    }
    others.extend(merged);
    others.sort_by_cached_key(Rule::sort_key);
    others
}

/// `can-i --list`'s table for a SubjectRulesReviewStatus.
pub fn rules_table(status: &Value, headers: bool) -> String {
    let mut lines = Vec::new();
    if headers {
        lines.push(
            ["Resources", "Non-Resource URLs", "Resource Names", "Verbs"]
                .map(String::from)
                .to_vec(),
        );
    }
    lines.extend(compact(status).iter().map(Rule::row));
    super::get::tabulate(&lines)
}

/// `whoami`'s table for a SelfSubjectReview: the user name, UID, groups and each extra
/// (sorted by key), the empty ones left out.
pub fn whoami_table(review: &Value) -> String {
    let user = &review["status"]["userInfo"];
    let mut lines = vec![vec!["ATTRIBUTE".to_string(), "VALUE".into()]];
    for (label, key) in [("Username", "username"), ("UID", "uid")] {
        if let Some(v) = user[key].as_str().filter(|v| !v.is_empty()) {
            lines.push(vec![label.into(), v.into()]);
        }
    }
    let groups = strings(&user["groups"]);
    if !groups.is_empty() {
        lines.push(vec!["Groups".into(), go_list(&groups)]);
    }
    if let Some(extra) = user["extra"].as_object() {
        let mut keys: Vec<&String> = extra.keys().collect();
        keys.sort();
        for k in keys {
            lines.push(vec![format!("Extra: {k}"), go_list(&strings(&extra[k]))]);
        }
    }
    super::get::tabulate(&lines)
}

pub async fn whoami(s: &Session, output: Option<&str>) -> anyhow::Result<()> {
    let output = Output::parse(output)?;
    let review = json!({
        "apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview",
        "metadata": { "creationTimestamp": null }, "status": { "userInfo": {} }
    });
    let got = match post(
        s,
        "/apis/authentication.k8s.io/v1/selfsubjectreviews",
        &review,
    )
    .await
    {
        Ok(got) => got,
        Err(e) => {
            let text = e.to_string();
            if text.starts_with("Error from server (Forbidden)") {
                return Err(anyhow!(
                    "the selfsubjectreviews API is not enabled in the cluster or you do not have permission to call it"
                ));
            }
            if text.starts_with("Error from server (NotFound)") {
                return Err(anyhow!(
                    "the selfsubjectreviews API is not enabled in the cluster"
                ));
            }
            return Err(e);
        }
    };
    let got = super::objects::go_order(Shape::SelfSubjectReview, &got);
    match output {
        None => print!("{}", whoami_table(&got)),
        Some(Output::Name) => println!(
            "selfsubjectreview.authentication.k8s.io/{}",
            super::objects::name_of(&got)
        ),
        Some(o) => print!("{}", super::objects::render(&got, o == Output::Json)?),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(subcommand)]
        cmd: AuthCmd,
    }

    fn can_i_args(words: &[&str]) -> CanIArgs {
        let mut argv = vec!["auth", "can-i"];
        argv.extend(words);
        match Cli::try_parse_from(argv).unwrap().cmd {
            AuthCmd::CanI(a) => a,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn can_i_arguments_parse_as_kubectl_reads_them() {
        assert_eq!(
            question(&can_i_args(&["get", "pods/web", "--subresource", "log"])).unwrap(),
            Question::Resource {
                verb: "get".into(),
                resource: "pods".into(),
                name: "web".into()
            }
        );
        assert_eq!(
            question(&can_i_args(&["get", "/healthz"])).unwrap(),
            Question::NonResource {
                verb: "get".into(),
                path: "/healthz".into()
            }
        );
        assert_eq!(question(&can_i_args(&["--list"])).unwrap(), Question::List);
        let err = |w: &[&str]| question(&can_i_args(w)).unwrap_err().to_string();
        assert!(err(&["get"]).starts_with("you must specify two arguments"));
        assert_eq!(
            err(&["--list", "get"]),
            "list option must be specified with no arguments"
        );
        assert!(err(&["--list", "-A"]).starts_with("list option can't be specified"));
        assert_eq!(
            err(&["get", "/x", "--subresource=log"]),
            "--subresource can not be used with NonResourceURL"
        );
        let a = can_i_args(&["create", "deployments.apps", "-A", "-q"]);
        assert!(a.all_namespaces && a.quiet);
    }

    #[test]
    fn verdicts_read_as_kubectl_prints_them() {
        assert_eq!(verdict(&json!({"allowed": true})), (true, "yes\n".into()));
        assert_eq!(verdict(&json!({"allowed": false})), (false, "no\n".into()));
        assert_eq!(
            verdict(&json!({"allowed": false, "reason": "nope", "evaluationError": "broken"})),
            (false, "no - nope - broken\n".into())
        );
    }

    #[test]
    fn rules_are_broken_down_merged_and_sorted_as_kubectl_does() {
        let status = json!({
            "resourceRules": [
                { "verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods", "pods/log"] },
                { "verbs": ["watch", "get"], "apiGroups": [""], "resources": ["pods"] },
                { "verbs": ["get"], "apiGroups": ["apps"], "resources": ["deployments/scale"],
                  "resourceNames": ["web"] },
                { "verbs": ["*"], "apiGroups": ["*"], "resources": ["*"] },
                { "verbs": ["create"], "apiGroups": ["authorization.k8s.io"],
                  "resources": ["selfsubjectaccessreviews", "selfsubjectrulesreviews"] }
            ],
            "nonResourceRules": [
                { "verbs": ["get"], "nonResourceURLs": ["/healthz", "/version"] },
                { "verbs": ["get"], "nonResourceURLs": ["/healthz"] }
            ],
            "incomplete": false
        });
        assert_eq!(
            rules_table(&status, true),
            "\
Resources                                       Non-Resource URLs   Resource Names   Verbs
*.*                                             []                  []               [*]
selfsubjectaccessreviews.authorization.k8s.io   []                  []               [create]
selfsubjectrulesreviews.authorization.k8s.io    []                  []               [create]
pods                                            []                  []               [get list watch]
pods/log                                        []                  []               [get list]
                                                [/healthz]          []               [get]
                                                [/healthz]          []               [get]
                                                [/version]          []               [get]
deployments.apps/scale                          []                  [web]            [get]
"
        );
        assert!(!rules_table(&json!({}), false).contains("Resources"));
    }

    #[test]
    fn whoami_prints_the_set_attributes() {
        let review = json!({ "status": { "userInfo": {
            "username": "system:serviceaccount:dev:bot",
            "uid": "1234",
            "groups": ["system:serviceaccounts", "system:authenticated"],
            "extra": { "b.io/x": ["2"], "a.io/y": ["1", "3"] }
        } } });
        assert_eq!(
            whoami_table(&review),
            "\
ATTRIBUTE       VALUE
Username        system:serviceaccount:dev:bot
UID             1234
Groups          [system:serviceaccounts system:authenticated]
Extra: a.io/y   [1 3]
Extra: b.io/x   [2]
"
        );
    }
}
