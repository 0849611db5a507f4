//! Leader election through a `coordination.k8s.io/v1` Lease, as client-go's leaderelection:
//! the holder renews `renewTime` every retry period; another candidate takes the Lease over
//! once it has seen the same record unchanged for a whole `leaseDurationSeconds` (measured on
//! its own clock, so clock skew between machines does not matter). Every write is a
//! compare-and-swap on the Lease's resourceVersion, so two candidates can never both win.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::PostParams;
use kube::{Api, Client};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The three durations of client-go's leader election (defaults 15 s, 10 s, 2 s).
#[derive(Debug, Clone, Copy)]
pub struct LeaseTimings {
    /// How long a non-leader waits after the last renewal it saw before taking over.
    pub lease_duration: Duration,
    /// How long the leader keeps trying to renew before it gives up leadership.
    pub renew_deadline: Duration,
    /// The pause between attempts.
    pub retry_period: Duration,
}

impl Default for LeaseTimings {
    fn default() -> Self {
        LeaseTimings {
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// Leadership was lost: the Lease could not be renewed within the renew deadline, or another
/// holder took it.
#[derive(Debug, thiserror::Error)]
#[error("lost leadership of Lease {namespace}/{name}")]
pub struct LostLeadership {
    pub namespace: String,
    pub name: String,
}

/// One candidate for one Lease.
pub struct LeaderElector {
    api: Api<Lease>,
    namespace: String,
    name: String,
    identity: String,
    timings: LeaseTimings,
    /// The last (holder, renewTime) seen, and when this process first saw it.
    observed: Option<(Option<String>, Option<String>, Instant)>,
}

impl LeaderElector {
    pub fn new(
        client: Client,
        namespace: &str,
        name: &str,
        identity: &str,
        timings: LeaseTimings,
    ) -> LeaderElector {
        LeaderElector {
            api: Api::namespaced(client, namespace),
            namespace: namespace.to_string(),
            name: name.to_string(),
            identity: identity.to_string(),
            timings,
            observed: None,
        }
    }

    /// Waits until this candidate holds the Lease (true), or until `shutdown` (false).
    pub async fn acquire(&mut self, shutdown: &CancellationToken) -> bool {
        let mut announced = false;
        loop {
            match self.try_acquire_or_renew().await {
                Ok(true) => {
                    tracing::info!(lease = %self.name, identity = %self.identity, "acquired leadership");
                    return true;
                }
                Ok(false) => {
                    if !announced {
                        tracing::info!(lease = %self.name, "another instance leads; waiting to take over");
                        announced = true;
                    }
                }
                Err(e) => tracing::warn!(lease = %self.name, error = %e, "leader election failed"),
            }
            tokio::select! {
                _ = tokio::time::sleep(self.timings.retry_period) => {}
                _ = shutdown.cancelled() => return false,
            }
        }
    }

    /// Renews the Lease until `shutdown` (then releases it, so a successor need not wait for it
    /// to expire) or until leadership is lost.
    pub async fn hold(mut self, shutdown: CancellationToken) -> Result<(), LostLeadership> {
        let mut last_renew = Instant::now();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(self.timings.retry_period) => {}
                _ = shutdown.cancelled() => {
                    self.release().await;
                    return Ok(());
                }
            }
            match self.try_acquire_or_renew().await {
                Ok(true) => last_renew = Instant::now(),
                Ok(false) => return Err(self.lost()),
                Err(e) => {
                    tracing::warn!(lease = %self.name, error = %e, "could not renew the Lease");
                    if last_renew.elapsed() > self.timings.renew_deadline {
                        return Err(self.lost());
                    }
                }
            }
        }
    }

    fn lost(&self) -> LostLeadership {
        LostLeadership {
            namespace: self.namespace.clone(),
            name: self.name.clone(),
        }
    }

    async fn try_acquire_or_renew(&mut self) -> Result<bool, kube::Error> {
        let now = MicroTime(jiff::Timestamp::now());
        let seconds = self.timings.lease_duration.as_secs().max(1) as i32;
        let Some(mut lease) = self.api.get_opt(&self.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    namespace: Some(self.namespace.clone()),
                    ..Default::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.identity.clone()),
                    lease_duration_seconds: Some(seconds),
                    acquire_time: Some(now.clone()),
                    renew_time: Some(now),
                    lease_transitions: Some(0),
                    ..Default::default()
                }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                Err(e) => Err(e),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
        let renew = spec.renew_time.as_ref().map(|t| t.0.to_string());
        let record = (holder.clone(), renew);
        let changed = match &self.observed {
            Some((h, r, _)) => (h, r) != (&record.0, &record.1),
            None => true,
        };
        if changed {
            self.observed = Some((record.0, record.1, Instant::now()));
        }
        let ours = holder.as_deref() == Some(self.identity.as_str());
        let held_for = spec
            .lease_duration_seconds
            .map(|s| Duration::from_secs(s.max(0) as u64))
            .unwrap_or(self.timings.lease_duration);
        let seen_at = self
            .observed
            .as_ref()
            .map(|o| o.2)
            .unwrap_or_else(Instant::now);
        if holder.is_some() && !ours && seen_at.elapsed() < held_for {
            return Ok(false);
        }
        let mut new_spec = spec.clone();
        new_spec.holder_identity = Some(self.identity.clone());
        new_spec.lease_duration_seconds = Some(seconds);
        new_spec.renew_time = Some(now.clone());
        if !ours {
            new_spec.acquire_time = Some(now);
            new_spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        }
        lease.spec = Some(new_spec);
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Gives the Lease up: an empty holder lets the next candidate take it at once.
    async fn release(&mut self) {
        let Ok(Some(mut lease)) = self.api.get_opt(&self.name).await else {
            return;
        };
        let Some(spec) = lease.spec.as_mut() else {
            return;
        };
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return;
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(MicroTime(jiff::Timestamp::now()));
        if self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
            .is_ok()
        {
            tracing::info!(lease = %self.name, "released leadership");
        }
    }
}

/// `--leader-elect` and its Lease: whether to elect, which Lease, and the timings.
#[derive(Debug, Clone)]
pub struct LeaderElection {
    pub enabled: bool,
    pub namespace: String,
    pub name: String,
    pub timings: LeaseTimings,
}

/// The leader-election flags kube-scheduler and kube-controller-manager share, to `flatten`
/// into a program's clap flags. `--leader-elect-resource-name` defaults to the program's own
/// Lease name, given to [`LeaderElectFlags::election`].
#[derive(Debug, Clone, clap::Args)]
pub struct LeaderElectFlags {
    /// Run only while holding the leader Lease, so several replicas can run.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub leader_elect: bool,
    /// How long a non-leader waits after the last renewal it saw before taking over.
    #[arg(long, default_value = "15s", value_parser = skiff_common::parse_duration)]
    pub leader_elect_lease_duration: Duration,
    /// How long the leader keeps trying to renew before it gives up leadership.
    #[arg(long, default_value = "10s", value_parser = skiff_common::parse_duration)]
    pub leader_elect_renew_deadline: Duration,
    /// The pause between attempts to acquire or renew.
    #[arg(long, default_value = "2s", value_parser = skiff_common::parse_duration)]
    pub leader_elect_retry_period: Duration,
    /// The namespace of the leader Lease.
    #[arg(long, default_value = "kube-system")]
    pub leader_elect_resource_namespace: String,
    /// The name of the leader Lease (default: the program's, e.g. kube-scheduler).
    #[arg(long)]
    pub leader_elect_resource_name: Option<String>,
}

impl LeaderElectFlags {
    /// The election these flags ask for; `default_name` is the program's Lease name.
    pub fn election(&self, default_name: &str) -> LeaderElection {
        LeaderElection {
            enabled: self.leader_elect,
            namespace: self.leader_elect_resource_namespace.clone(),
            name: self
                .leader_elect_resource_name
                .clone()
                .unwrap_or_else(|| default_name.to_string()),
            timings: LeaseTimings {
                lease_duration: self.leader_elect_lease_duration,
                renew_deadline: self.leader_elect_renew_deadline,
                retry_period: self.leader_elect_retry_period,
            },
        }
    }
}

/// What a program that runs only while leading holds: a token cancelled when work must stop
/// (shutdown or lost leadership), and the task renewing the Lease.
pub struct Leadership {
    pub work: CancellationToken,
    holder: Option<tokio::task::JoinHandle<Result<(), LostLeadership>>>,
}

impl Leadership {
    /// Per `election`: waits to lead (None if `shutdown` comes first), or, with election off,
    /// works until `shutdown`.
    pub async fn start(
        client: Client,
        election: &LeaderElection,
        identity: &str,
        shutdown: &CancellationToken,
    ) -> Option<Leadership> {
        if !election.enabled {
            return Some(Leadership::unelected(shutdown));
        }
        Leadership::acquire(
            client,
            &election.namespace,
            &election.name,
            identity,
            election.timings,
            shutdown,
        )
        .await
    }

    /// Without leader election: work until `shutdown`.
    pub fn unelected(shutdown: &CancellationToken) -> Leadership {
        Leadership {
            work: shutdown.child_token(),
            holder: None,
        }
    }

    /// Waits to hold the Lease (None if `shutdown` comes first), then keeps it in the
    /// background; `work` is cancelled if it is lost.
    pub async fn acquire(
        client: Client,
        namespace: &str,
        name: &str,
        identity: &str,
        timings: LeaseTimings,
        shutdown: &CancellationToken,
    ) -> Option<Leadership> {
        let mut elector = LeaderElector::new(client, namespace, name, identity, timings);
        if !elector.acquire(shutdown).await {
            return None;
        }
        let work = shutdown.child_token();
        let stop_work = work.clone();
        let until = shutdown.clone();
        let holder = tokio::spawn(async move {
            let held = elector.hold(until).await;
            stop_work.cancel();
            held
        });
        Some(Leadership {
            work,
            holder: Some(holder),
        })
    }

    /// After the work stopped: `Err` if it stopped because leadership was lost.
    pub async fn finish(self) -> Result<(), LostLeadership> {
        match self.holder {
            Some(h) => h.await.unwrap_or(Ok(())),
            None => Ok(()),
        }
    }
}
