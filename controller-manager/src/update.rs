//! Status writes as Kubernetes' controllers make them: a PUT of the `/status` subresource (the
//! `update` verb their bootstrap roles grant, not `patch`) carrying the whole computed status.
//! The body names the object and nothing else of it: the apiserver keeps everything but the
//! status from the stored object. No resourceVersion: the status is computed whole from the
//! caches, so the last write is the right one (these kinds allow unconditional updates).

use kube::Resource;
use kube::api::{Api, PostParams};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

/// Replaces the status of `name` with `status`.
pub async fn status<K>(api: &Api<K>, name: &str, status: &Value) -> kube::Result<K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let body = json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "metadata": { "name": name },
        "status": status,
    });
    let object: K = serde_json::from_value(body).map_err(kube::Error::SerdeError)?;
    api.replace_status(name, &PostParams::default(), &object)
        .await
}
