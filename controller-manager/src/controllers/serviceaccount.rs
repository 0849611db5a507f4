//! The ServiceAccount controller: every active namespace has a ServiceAccount `default`,
//! created with the namespace and again whenever it is deleted. A namespace that is not
//! Active (being terminated) gets nothing.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::PostParams;
use kube::{Api, Client, ResourceExt};

use crate::context::Context;
use crate::controller::{Controller, Reconciler, Result};
use crate::workqueue::WorkQueue;
use skiff_client::informer::Change;

/// The ServiceAccount every namespace gets.
pub const DEFAULT_SERVICE_ACCOUNT: &str = "default";

/// Whether a namespace may get new content: its phase is Active (as upstream checks; Skiff's
/// apiserver sets it on creation and Terminating on deletion).
pub fn is_active(ns: &Namespace) -> bool {
    ns.metadata.deletion_timestamp.is_none()
        && ns.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Active")
}

/// Whether a create failed only because its namespace is being terminated (upstream's
/// `NamespaceTerminating` cause, or the apiserver's message for it): nothing to retry.
pub fn namespace_terminating(e: &kube::Error) -> bool {
    let kube::Error::Api(s) = e else {
        return false;
    };
    let cause = s
        .details
        .as_ref()
        .is_some_and(|d| d.causes.iter().any(|c| c.reason == "NamespaceTerminating"));
    cause || (s.code == 403 && s.message.contains("because it is being terminated"))
}

pub struct ServiceAccountsController {
    ctx: Arc<Context>,
    client: Client,
}

impl ServiceAccountsController {
    pub fn new(ctx: Arc<Context>, queue: Arc<WorkQueue>) -> Arc<Self> {
        crate::controller::queue_every_change(&ctx.namespaces, queue.clone());
        let q = queue.clone();
        ctx.default_service_accounts().on_change(move |c| {
            if let Change::Deleted(sa) = c
                && let Some(ns) = sa.namespace()
            {
                q.add(ns);
            }
        });
        Arc::new(ServiceAccountsController {
            client: ctx.client_for(Self::SERVICE_ACCOUNT),
            ctx,
        })
    }
}

impl Controller for ServiceAccountsController {
    const SERVICE_ACCOUNT: &'static str = "service-account-controller";

    fn build(ctx: &Arc<Context>, queue: Arc<WorkQueue>) -> Arc<Self> {
        Self::new(ctx.clone(), queue)
    }
}

impl Reconciler for ServiceAccountsController {
    const NAME: &'static str = "serviceaccount";

    async fn reconcile(&self, key: &str) -> Result<Option<Duration>> {
        let Some(ns) = self.ctx.namespaces.get(None, key) else {
            return Ok(None);
        };
        if !is_active(&ns) {
            return Ok(None);
        }
        let accounts = self.ctx.default_service_accounts();
        if accounts.get(Some(key), DEFAULT_SERVICE_ACCOUNT).is_some() {
            return Ok(None);
        }
        let mut sa = ServiceAccount::default();
        sa.metadata.name = Some(DEFAULT_SERVICE_ACCOUNT.into());
        sa.metadata.namespace = Some(key.into());
        let api: Api<ServiceAccount> = Api::namespaced(self.client.clone(), key);
        match api.create(&PostParams::default(), &sa).await {
            Ok(_) => {
                tracing::debug!(namespace = %key, "created ServiceAccount default");
                Ok(None)
            }
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(None),
            Err(e) if namespace_terminating(&e) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::Settings;
    use crate::testing::{FakeApi, namespace};
    use tokio_util::sync::CancellationToken;

    #[tokio::test]
    async fn every_active_namespace_gets_default_again_after_a_deletion() {
        let api = FakeApi::new();
        api.create("namespaces", None, namespace("kube-system", false));
        let stop = CancellationToken::new();
        let ctx = api.context(Settings::default(), &stop);
        api.start(&ctx, &[ServiceAccountsController::NAME], &stop)
            .await;
        // Namespaces that existed before the controller started get one.
        api.wait_for(
            "serviceaccounts",
            Some("kube-system"),
            "default",
            "created",
            |_| true,
        )
        .await;

        api.create("namespaces", None, namespace("team-a", false));
        let sa = api
            .wait_for(
                "serviceaccounts",
                Some("team-a"),
                "default",
                "created",
                |_| true,
            )
            .await;
        assert_eq!(sa["metadata"]["namespace"], "team-a");

        api.delete("serviceaccounts", Some("team-a"), "default");
        api.wait_for(
            "serviceaccounts",
            Some("team-a"),
            "default",
            "created again",
            |_| true,
        )
        .await;

        // Nothing is created in a namespace being terminated (the Active one created after
        // it shows that the controller had its turn).
        api.create("namespaces", None, namespace("leaving", true));
        api.create("namespaces", None, namespace("team-b", false));
        api.wait_for(
            "serviceaccounts",
            Some("team-b"),
            "default",
            "created",
            |_| true,
        )
        .await;
        assert!(
            api.get("serviceaccounts", Some("leaving"), "default")
                .is_none()
        );
        assert_eq!(
            api.changes("serviceaccounts"),
            [
                "ADDED kube-system/default",
                "ADDED team-a/default",
                "DELETED team-a/default",
                "ADDED team-a/default",
                "ADDED team-b/default",
            ]
        );
        stop.cancel();
    }
}
