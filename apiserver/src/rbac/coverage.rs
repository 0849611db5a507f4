//! Whether one set of RBAC rules covers another: the test behind privilege-escalation
//! prevention (a user may grant only what they hold) and behind bootstrap reconciliation.

use k8s_openapi::api::rbac::v1::PolicyRule;

/// The parts of `requested` that no rule of `owner` grants, as atomic rules.
///
/// Each requested rule is broken into atomic rules (see [`breakdown`]) and each atomic rule is
/// kept when no owner rule covers it, with Kubernetes' matching: `*` matches any verb, API group
/// or resource; an owner resource `*/sub` matches subresource `sub` of any resource (there is no
/// `res/*` form: Kubernetes reads `pods/*` literally); an owner URL ending in `*` matches the
/// URLs it prefixes; an owner rule without resource names applies to every name, while an
/// atomic rule without a name needs an owner rule without names.
///
/// An empty result means `owner` covers all of `requested`: the test for whether a user may
/// create or bind a role without the `escalate` or `bind` verbs.
pub fn covers(owner: &[PolicyRule], requested: &[PolicyRule]) -> Vec<PolicyRule> {
    requested
        .iter()
        .flat_map(breakdown)
        .filter(|atom| !owner.iter().any(|rule| rule_covers(rule, atom)))
        .collect()
}

/// Breaks a rule into atomic rules: one per API group, resource, verb and resource name (or
/// none when the rule names none), and one per non-resource URL and verb.
pub fn breakdown(rule: &PolicyRule) -> Vec<PolicyRule> {
    let one = |s: &String| Some(vec![s.clone()]);
    let mut atoms = Vec::new();
    for group in list(&rule.api_groups) {
        for resource in list(&rule.resources) {
            for verb in &rule.verbs {
                let atom = PolicyRule {
                    api_groups: one(group),
                    resources: one(resource),
                    verbs: vec![verb.clone()],
                    ..PolicyRule::default()
                };
                let names = list(&rule.resource_names);
                if names.is_empty() {
                    atoms.push(atom);
                } else {
                    atoms.extend(names.iter().map(|name| PolicyRule {
                        resource_names: one(name),
                        ..atom.clone()
                    }));
                }
            }
        }
    }
    for url in list(&rule.non_resource_urls) {
        for verb in &rule.verbs {
            atoms.push(PolicyRule {
                non_resource_urls: one(url),
                verbs: vec![verb.clone()],
                ..PolicyRule::default()
            });
        }
    }
    atoms
}

pub(crate) fn list(field: &Option<Vec<String>>) -> &[String] {
    field.as_deref().unwrap_or_default()
}

fn has(set: &[String], item: &str) -> bool {
    set.iter().any(|s| s == item)
}

fn has_all(set: &[String], items: &[String]) -> bool {
    items.iter().all(|item| has(set, item))
}

/// Whether `owner` grants all of `sub`, a rule with at most one verb, group, resource, name or
/// URL (but written for any, as upstream's is).
fn rule_covers(owner: &PolicyRule, sub: &PolicyRule) -> bool {
    let verbs = has(&owner.verbs, "*") || has_all(&owner.verbs, &sub.verbs);
    let owner_groups = list(&owner.api_groups);
    let groups = has(owner_groups, "*") || has_all(owner_groups, list(&sub.api_groups));
    let resources = resources_cover(list(&owner.resources), list(&sub.resources));
    let urls = list(&sub.non_resource_urls).iter().all(|path| {
        list(&owner.non_resource_urls)
            .iter()
            .any(|owner_path| url_covers(owner_path, path))
    });
    let owner_names = list(&owner.resource_names);
    let sub_names = list(&sub.resource_names);
    let names = if sub_names.is_empty() {
        // A request for every name needs a rule for every name.
        owner_names.is_empty()
    } else {
        owner_names.is_empty() || has_all(owner_names, sub_names)
    };
    verbs && groups && resources && urls && names
}

fn resources_cover(owner: &[String], requested: &[String]) -> bool {
    if has(owner, "*") {
        return true;
    }
    requested.iter().all(|resource| {
        has(owner, resource)
            || resource
                .split_once('/')
                .is_some_and(|(_, sub)| has(owner, &format!("*/{sub}")))
    })
}

fn url_covers(owner: &str, path: &str) -> bool {
    owner == path
        || owner
            .strip_suffix('*')
            .is_some_and(|prefix| path.starts_with(prefix.trim_end_matches('*')))
}

/// Merges atomic rules that differ only in their verb back into one rule each, as Kubernetes
/// compacts the rules it lists in an escalation error.
pub fn compact(rules: Vec<PolicyRule>) -> Vec<PolicyRule> {
    let mut out: Vec<PolicyRule> = Vec::new();
    for rule in rules {
        match out.iter_mut().find(|r| {
            r.api_groups == rule.api_groups
                && r.resources == rule.resources
                && r.resource_names == rule.resource_names
                && r.non_resource_urls == rule.non_resource_urls
        }) {
            Some(r) => {
                for v in rule.verbs {
                    if !r.verbs.contains(&v) {
                        r.verbs.push(v);
                    }
                }
            }
            None => out.push(rule),
        }
    }
    out
}

/// A rule as Kubernetes prints it in messages:
/// `{APIGroups:[""], Resources:["pods"], Verbs:["get" "list"]}`.
pub fn compact_string(rule: &PolicyRule) -> String {
    let quoted = |items: &[String]| -> String {
        let q: Vec<String> = items.iter().map(|s| format!("{s:?}")).collect();
        format!("[{}]", q.join(" "))
    };
    let mut parts = Vec::new();
    for (label, items) in [
        ("APIGroups", list(&rule.api_groups)),
        ("Resources", list(&rule.resources)),
        ("NonResourceURLs", list(&rule.non_resource_urls)),
        ("ResourceNames", list(&rule.resource_names)),
        ("Verbs", rule.verbs.as_slice()),
    ] {
        if !items.is_empty() {
            parts.push(format!("{label}:{}", quoted(items)));
        }
    }
    format!("{{{}}}", parts.join(", "))
}
