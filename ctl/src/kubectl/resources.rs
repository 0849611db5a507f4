//! Discovery: the resources the apiserver serves (core/v1 and each group's preferred
//! version), and resolving what a user types (`po`, `pods`, `pod`, `Pod`,
//! `deployments.apps`, `all`) to them, as kubectl's RESTMapper does.

use anyhow::anyhow;

use super::Session;

/// One served resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    pub group: String,
    pub version: String,
    pub plural: String,
    pub singular: String,
    pub kind: String,
    pub namespaced: bool,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    pub verbs: Vec<String>,
}

impl Resource {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The collection's path: in `namespace` when the resource is namespaced and one is
    /// given, else across all namespaces.
    pub fn path(&self, namespace: Option<&str>) -> String {
        let prefix = if self.group.is_empty() {
            format!("/api/{}", self.version)
        } else {
            format!("/apis/{}/{}", self.group, self.version)
        };
        match namespace {
            Some(ns) if self.namespaced => {
                format!("{prefix}/namespaces/{ns}/{}", self.plural)
            }
            _ => format!("{prefix}/{}", self.plural),
        }
    }

    /// `pod`, `deployment.apps`: how kubectl names objects of this resource (`-o name`).
    pub fn qualified_kind(&self) -> String {
        let kind = self.kind.to_lowercase();
        if self.group.is_empty() {
            kind
        } else {
            format!("{kind}.{}", self.group)
        }
    }

    fn matches(&self, word: &str) -> bool {
        let (name, group) = match word.split_once('.') {
            Some((n, g)) => (n, Some(g)),
            None => (word, None),
        };
        if group.is_some_and(|g| g != self.group) {
            return false;
        }
        let name = name.to_lowercase();
        name == self.plural
            || name == self.singular
            || name == self.kind.to_lowercase()
            || self.short_names.contains(&name)
    }
}

/// Every resource the apiserver serves, subresources left out.
pub async fn discover(s: &Session) -> anyhow::Result<Vec<Resource>> {
    let mut out = Vec::new();
    let err = |e| super::explain(e, &s.server);
    let mut lists = Vec::new();
    let core = s.client.list_core_api_versions().await.map_err(err)?;
    for v in &core.versions {
        lists.push((
            String::new(),
            v.clone(),
            s.client.list_core_api_resources(v).await.map_err(err)?,
        ));
    }
    for g in s.client.list_api_groups().await.map_err(err)?.groups {
        let Some(preferred) = g.preferred_version.or_else(|| g.versions.first().cloned()) else {
            continue;
        };
        let list = s
            .client
            .list_api_group_resources(&preferred.group_version)
            .await
            .map_err(err)?;
        lists.push((g.name.clone(), preferred.version.clone(), list));
    }
    for (group, version, list) in lists {
        for r in list.resources {
            if r.name.contains('/') {
                continue;
            }
            out.push(Resource {
                group: group.clone(),
                version: version.clone(),
                singular: if r.singular_name.is_empty() {
                    r.kind.to_lowercase()
                } else {
                    r.singular_name.clone()
                },
                plural: r.name,
                kind: r.kind,
                namespaced: r.namespaced,
                short_names: r.short_names.unwrap_or_default(),
                categories: r.categories.unwrap_or_default(),
                verbs: r.verbs,
            });
        }
    }
    Ok(out)
}

/// The resources `word` names (`all` is a category; others name one resource). Core wins
/// over groups for the same name, as kubectl prefers.
pub fn resolve<'a>(all: &'a [Resource], word: &str) -> anyhow::Result<Vec<&'a Resource>> {
    let lower = word.to_lowercase();
    let in_category: Vec<&Resource> = all
        .iter()
        .filter(|r| r.categories.contains(&lower))
        .collect();
    if !in_category.is_empty() {
        return Ok(in_category);
    }
    let mut found: Vec<&Resource> = all.iter().filter(|r| r.matches(word)).collect();
    found.sort_by_key(|r| !r.group.is_empty());
    found
        .into_iter()
        .next()
        .map(|r| vec![r])
        .ok_or_else(|| anyhow!("the server doesn't have a resource type \"{word}\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn res(group: &str, plural: &str, kind: &str, short: &[&str], cats: &[&str]) -> Resource {
        Resource {
            group: group.into(),
            version: "v1".into(),
            plural: plural.into(),
            singular: kind.to_lowercase(),
            kind: kind.into(),
            namespaced: plural != "nodes",
            short_names: short.iter().map(|s| s.to_string()).collect(),
            categories: cats.iter().map(|s| s.to_string()).collect(),
            verbs: vec!["list".into()],
        }
    }

    #[test]
    fn names_short_names_kinds_groups_and_categories_resolve() {
        let all = vec![
            res("", "pods", "Pod", &["po"], &["all"]),
            res("apps", "deployments", "Deployment", &["deploy"], &["all"]),
            res("", "nodes", "Node", &["no"], &[]),
            res("events.k8s.io", "events", "Event", &["ev"], &[]),
            res("", "events", "Event", &["ev"], &[]),
        ];
        for word in ["po", "pod", "pods", "Pod", "PODS"] {
            assert_eq!(resolve(&all, word).unwrap()[0].plural, "pods", "{word}");
        }
        assert_eq!(resolve(&all, "deploy").unwrap()[0].group, "apps");
        assert_eq!(
            resolve(&all, "deployments.apps").unwrap()[0].kind,
            "Deployment"
        );
        assert!(resolve(&all, "deployments.batch").is_err());
        assert_eq!(resolve(&all, "ev").unwrap()[0].group, "", "core first");
        assert_eq!(resolve(&all, "all").unwrap().len(), 2);
        assert_eq!(
            resolve(&all, "nope").unwrap_err().to_string(),
            "the server doesn't have a resource type \"nope\""
        );
        let pods = &all[0];
        assert_eq!(pods.path(Some("dev")), "/api/v1/namespaces/dev/pods");
        assert_eq!(pods.path(None), "/api/v1/pods");
        assert_eq!(all[2].path(Some("dev")), "/api/v1/nodes");
        assert_eq!(
            all[1].path(Some("a")),
            "/apis/apps/v1/namespaces/a/deployments"
        );
        assert_eq!(all[1].qualified_kind(), "deployment.apps");
    }
}
