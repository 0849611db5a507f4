//! GET and LIST: one object, or a page of them with label and field selectors and continue
//! tokens, from the watch cache when the client accepts any recent state, else from the store.

use base64::Engine;
use serde_json::{Value, json};
use skiff_api::ResourceInfo;
use skiff_api::selectors::{FieldSelector, LabelSelector};
use skiff_store::{Revision, StoreError};

use super::{Page, Registry, parse_rv, to_external};
use crate::cache::decode;
use crate::error::{ApiError, ApiResult};
use crate::objects;
use crate::request::Params;

impl Registry {
    /// GET one object.
    pub async fn get(
        &self,
        info: &'static ResourceInfo,
        ns: Option<&str>,
        name: &str,
        params: &Params,
    ) -> ApiResult<Value> {
        let key = Self::key(info, ns, name);
        if params.get("resourceVersion") == Some("0")
            && let Some(cache) = self.cache.for_resource(info)
            && let Some(obj) = cache.get(&key)
        {
            return Ok(to_external(info, (*obj).clone()));
        }
        let (obj, _) = self.read(info, &key, name).await?;
        Ok(to_external(info, obj))
    }

    /// LIST with selectors and pagination.
    pub async fn list(
        &self,
        info: &'static ResourceInfo,
        ns: Option<&str>,
        params: &Params,
    ) -> ApiResult<Page> {
        let labels =
            match params.get("labelSelector") {
                Some(s) => Some(LabelSelector::parse(s).map_err(|e| {
                    ApiError::bad_request(format!("unable to parse requirement: {e}"))
                })?),
                None => None,
            };
        let fields = match params.get("fieldSelector") {
            Some(s) => Some(FieldSelector::parse(s, info).map_err(ApiError::bad_request)?),
            None => None,
        };
        let keep = |obj: &Value| {
            labels.as_ref().is_none_or(|l| {
                l.matches(obj.pointer("/metadata/labels").and_then(Value::as_object))
            }) && fields.as_ref().is_none_or(|f| f.matches(obj))
        };
        let limit = params.int("limit")?.filter(|l| *l > 0).map(|l| l as usize);
        let prefix = Self::list_prefix(info, ns);

        // resourceVersion=0 without pagination: any recent state will do, serve the cache.
        if params.get("resourceVersion") == Some("0")
            && params.get("continue").is_none()
            && let Some(cache) = self.cache.for_resource(info)
        {
            let (snapshot, rev) = cache.snapshot(&prefix);
            let mut items: Vec<Value> = snapshot
                .iter()
                .filter(|o| keep(o))
                .map(|o| to_external(info, (**o).clone()))
                .collect();
            let mut continue_token = None;
            if let Some(l) = limit
                && items.len() > l
            {
                items.truncate(l);
                // Later pages come from the store at the same revision.
                let last = items
                    .last()
                    .and_then(|o| objects::name(o))
                    .unwrap_or_default();
                let last_ns = items.last().and_then(|o| objects::namespace(o));
                continue_token = Some(encode_continue(rev, &Self::key(info, last_ns, last)));
            }
            return Ok(Page {
                items,
                resource_version: rev,
                continue_token,
                remaining: None,
            });
        }

        let (mut start, mut revision) = match params.get("continue") {
            Some(token) => {
                let (rev, start) = decode_continue(token)?;
                (Some(start), Some(rev))
            }
            None => {
                let rev = match (
                    params.get("resourceVersion"),
                    params.get("resourceVersionMatch"),
                ) {
                    (Some(rv), Some("Exact")) => Some(parse_rv(rv)?),
                    _ => None,
                };
                (None, rev)
            }
        };
        let mut items = Vec::new();
        let page_size = limit.map(|l| l.max(100)).unwrap_or(0);
        loop {
            let res = self
                .store
                .list(&prefix, start.as_deref(), page_size, revision)
                .await
                .map_err(|e| match e {
                    StoreError::Compacted { .. } if params.get("continue").is_some() => ApiError::gone(
                        "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.",
                    ),
                    e => ApiError::from_store(e, info, ""),
                })?;
            revision = Some(res.revision);
            let mut last_key = None;
            for kv in &res.items {
                last_key = Some(kv.key.clone());
                let obj = decode(&kv.value, kv.mod_revision)
                    .map_err(|e| ApiError::internal(e.to_string()))?;
                if keep(&obj) {
                    items.push(to_external(info, obj));
                    if let Some(l) = limit
                        && items.len() == l
                    {
                        // More may follow: either this page had keys left, or the store said so.
                        let more = res.more
                            || kv.key
                                != res.items.last().map(|k| k.key.clone()).unwrap_or_default();
                        let token = more.then(|| encode_continue(res.revision, &kv.key));
                        return Ok(Page {
                            items,
                            resource_version: res.revision,
                            continue_token: token,
                            remaining: None,
                        });
                    }
                }
            }
            if !res.more {
                break;
            }
            start = last_key;
        }
        Ok(Page {
            items,
            resource_version: revision.unwrap_or(0),
            continue_token: None,
            remaining: None,
        })
    }
}

fn encode_continue(rev: Revision, key: &str) -> String {
    let raw = serde_json::to_vec(&json!({ "v": "skiff/v1", "rv": rev, "start": key }))
        .unwrap_or_default();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

fn decode_continue(token: &str) -> ApiResult<(Revision, String)> {
    let bad = || {
        ApiError::bad_request(
            "continue key is not valid: start a new list without the continue parameter",
        )
    };
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
    let rev = v.get("rv").and_then(Value::as_i64).ok_or_else(bad)?;
    let start = v
        .get("start")
        .and_then(Value::as_str)
        .ok_or_else(bad)?
        .to_string();
    Ok((rev, start))
}
