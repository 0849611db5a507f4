//! The event recorder: core/v1 Events as `kubectl describe` shows them ("Scheduled",
//! "FailedScheduling", ...). Publishing never blocks the caller: events go through a bounded
//! queue to a writer task, and are dropped (and counted) when the queue is full, as client-go's
//! broadcaster does, because an event is a report and must never slow the work it reports on.
//! Repeats of the same event on the same object bump `count` and `lastTimestamp` instead of
//! creating a new object.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

/// How many events may wait for the writer before new ones are dropped.
const QUEUE: usize = 1000;
/// How many event writes run at once.
const WRITERS: usize = 4;
/// How many distinct events are remembered for aggregation before the memory is reset.
const REMEMBERED: usize = 4096;

/// `type` of an Event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    Normal,
    Warning,
}

impl EventType {
    fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}

struct Record {
    object: ObjectReference,
    type_: EventType,
    reason: String,
    message: String,
}

/// Writes Events for one component (`source.component`, e.g. `default-scheduler`).
#[derive(Clone)]
pub struct Recorder {
    tx: mpsc::Sender<Record>,
    dropped: Arc<AtomicU64>,
}

impl Recorder {
    /// Starts the writer task; it stops after `shutdown`, flushing what is queued for up to
    /// two seconds.
    pub fn new(
        client: Client,
        component: &str,
        instance: &str,
        shutdown: CancellationToken,
    ) -> Recorder {
        let (tx, rx) = mpsc::channel(QUEUE);
        let writer = Writer {
            client,
            component: component.to_string(),
            instance: instance.to_string(),
            seen: HashMap::new(),
            permits: Arc::new(Semaphore::new(WRITERS)),
        };
        tokio::spawn(writer.run(rx, shutdown));
        Recorder {
            tx,
            dropped: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Queues an event about `object`.
    pub fn publish(
        &self,
        object: ObjectReference,
        type_: EventType,
        reason: &str,
        message: String,
    ) {
        let record = Record {
            object,
            type_,
            reason: reason.to_string(),
            message,
        };
        if self.tx.try_send(record).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Events dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

#[derive(Hash, PartialEq, Eq)]
struct Key {
    namespace: String,
    object: String,
    type_: EventType,
    reason: String,
    message: String,
}

struct Seen {
    name: String,
    count: i32,
}

struct Writer {
    client: Client,
    component: String,
    instance: String,
    seen: HashMap<Key, Seen>,
    permits: Arc<Semaphore>,
}

impl Writer {
    async fn run(mut self, mut rx: mpsc::Receiver<Record>, shutdown: CancellationToken) {
        loop {
            let record = tokio::select! {
                r = rx.recv() => match r {
                    Some(r) => r,
                    None => return,
                },
                _ = shutdown.cancelled() => break,
            };
            self.write(record).await;
        }
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(2);
        while let Ok(Some(record)) = tokio::time::timeout_at(deadline, rx.recv()).await {
            self.write(record).await;
        }
        let _ = tokio::time::timeout_at(deadline, self.permits.acquire_many(WRITERS as u32)).await;
    }

    /// Starts the write of one event (create, or a count bump for a repeat); waits only for a
    /// free writer slot.
    async fn write(&mut self, record: Record) {
        let Ok(permit) = self.permits.clone().acquire_owned().await else {
            return;
        };
        let namespace = record
            .object
            .namespace
            .clone()
            .unwrap_or_else(|| "default".to_string());
        let object_name = record.object.name.clone().unwrap_or_default();
        let key = Key {
            namespace: namespace.clone(),
            object: record
                .object
                .uid
                .clone()
                .unwrap_or_else(|| object_name.clone()),
            type_: record.type_,
            reason: record.reason.clone(),
            message: record.message.clone(),
        };
        if self.seen.len() >= REMEMBERED {
            self.seen.clear();
        }
        let now = Time(jiff::Timestamp::now());
        let api: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
        if let Some(seen) = self.seen.get_mut(&key) {
            seen.count += 1;
            let name = seen.name.clone();
            let patch = serde_json::json!({ "count": seen.count, "lastTimestamp": now });
            tokio::spawn(async move {
                let _permit = permit;
                if let Err(e) = api
                    .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                {
                    tracing::debug!(event = %name, error = %e, "could not update an event");
                }
            });
            return;
        }
        // client-go's naming: the object's name and the time in nanoseconds, in hex.
        let name = format!(
            "{object_name}.{:x}",
            now.0.as_nanosecond().max(0) as u128 + self.seen.len() as u128
        );
        let event = Event {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(namespace),
                ..Default::default()
            },
            involved_object: record.object,
            reason: Some(record.reason),
            message: Some(record.message),
            type_: Some(record.type_.as_str().to_string()),
            count: Some(1),
            first_timestamp: Some(now.clone()),
            last_timestamp: Some(now),
            source: Some(EventSource {
                component: Some(self.component.clone()),
                host: None,
            }),
            reporting_component: Some(self.component.clone()),
            reporting_instance: Some(self.instance.clone()),
            ..Default::default()
        };
        self.seen.insert(key, Seen { name, count: 1 });
        tokio::spawn(async move {
            let _permit = permit;
            if let Err(e) = api.create(&PostParams::default(), &event).await {
                tracing::debug!(reason = ?event.reason, error = %e, "could not write an event");
            }
        });
    }
}
