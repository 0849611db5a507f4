//! The etcd backend: [`Store`] mapped onto etcd v3's KV, Txn and Watch APIs, for production
//! clusters where several apiservers share one etcd cluster.

mod lease;

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use etcd_client::{
    Client, CompactionOptions, Compare, CompareOp, ConnectOptions, DeleteOptions, EventType,
    GetOptions, KvClient, PutOptions, Txn, TxnOp, TxnOpResponse, TxnResponse, WatchClient,
    WatchOptions,
};
use futures::StreamExt;
use tokio::sync::{mpsc, oneshot};

use crate::{
    EventKind, KeyValue, ListResult, Revision, Store, StoreError, WatchEvent, WatchStream,
};

/// How long `connect` waits for etcd to answer its first request.
const CONNECT_PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long to wait for etcd to tell us its compaction revision after a read hit it. etcd
/// reports compaction to unsynced watchers from a loop that runs every 100 ms.
const COMPACT_REVISION_TIMEOUT: Duration = Duration::from_secs(2);

/// A [`Store`] backed by an etcd v3 cluster.
///
/// Cloning is cheap and clones share one gRPC channel, which multiplexes any number of
/// concurrent requests and watches.
#[derive(Clone)]
pub struct EtcdStore {
    /// The KV and watch clients with the response limits below.
    kv: KvClient,
    watch: WatchClient,
    leases: Arc<lease::LeaseManager>,
    creates: mpsc::Sender<CreateRequest>,
}

/// Most creates one transaction carries (etcd's default `--max-txn-ops`).
const MAX_BATCH: usize = 128;

/// Most bytes of creates one transaction carries. etcd refuses a request over its
/// `--max-request-bytes` (1.5 MiB by default) whole; staying under 1 MiB leaves room for the
/// transaction's own overhead and for etcds run with a somewhat lower limit.
const MAX_BATCH_BYTES: usize = 1 << 20;

/// Largest KV response the client accepts (gRPC's default is 4 MiB, less than a page of large
/// objects). A list whose page would be larger is read in smaller pages (see `list`), so this
/// bounds the memory one read takes, not what can be listed.
const MAX_KV_RESPONSE_BYTES: usize = 64 << 20;

/// Largest watch response the client accepts. etcd packs up to 1,000 revisions into one watch
/// response and a watch cannot be paged, so this is etcd's own client's limit (2 GiB).
const MAX_WATCH_RESPONSE_BYTES: usize = i32::MAX as usize;

/// A create waiting for its batch.
struct CreateRequest {
    key: String,
    value: Bytes,
    /// The lease the key is attached to, for a create with a TTL.
    lease: Option<i64>,
    reply: oneshot::Sender<Result<Revision, StoreError>>,
}

impl CreateRequest {
    /// Roughly what the create adds to a transaction: the key thrice (compare, put and the
    /// else branch's get), the value, and some framing.
    fn txn_bytes(&self) -> usize {
        3 * self.key.len() + self.value.len() + 32
    }
}

/// How many of the creates whose transaction sizes are `sizes` (in queue order) go in the next
/// transaction: as many as fit in `max_bytes` and `max_ops`, and always at least one (a create
/// too large for any transaction then fails alone).
fn batch_len(sizes: impl IntoIterator<Item = usize>, max_bytes: usize, max_ops: usize) -> usize {
    let mut total = 0;
    let mut count = 0;
    for size in sizes {
        if count == max_ops || (count > 0 && total + size > max_bytes) {
            break;
        }
        total += size;
        count += 1;
    }
    count
}

/// Group commit for creates. etcd 3.4 spends about three times the CPU on a one-key
/// transaction as on a plain put, and a create must be a transaction (create-if-absent), so
/// creates that arrive together are committed in one transaction: every key's
/// `create_revision == 0` compared, every key put. They then share one revision, as writes in
/// one etcd transaction do. If any key already exists, the transaction's else branch reads
/// them all, those callers get `AlreadyExists`, and the rest go again.
///
/// One transaction is in flight at a time; what arrives meanwhile forms the next. With 64
/// concurrent creates that gave 12,400–12,900 creates/s where four transactions in flight
/// gave 9,300–10,200: fuller transactions cost etcd less per key (40 instead of 65 µs of
/// CPU) and the apiserver fewer watch messages to decode.
///
/// Batches are also bounded by bytes ([`MAX_BATCH_BYTES`]): creates that would overflow one wait
/// for the next. Should a batch of several still fail (etcd refusing its size, or anything
/// else), each of its creates is tried alone, so one bad create fails only itself.
async fn batch_creates(kv: KvClient, mut requests: mpsc::Receiver<CreateRequest>) {
    let mut queue = VecDeque::new();
    loop {
        if queue.is_empty() {
            match requests.recv().await {
                Some(first) => queue.push_back(first),
                None => return,
            }
        }
        while queue.len() < MAX_BATCH {
            match requests.try_recv() {
                Ok(r) => queue.push_back(r),
                Err(_) => break,
            }
        }
        let take = batch_len(
            queue.iter().map(CreateRequest::txn_bytes),
            MAX_BATCH_BYTES,
            MAX_BATCH,
        );
        let batch: Vec<_> = queue.drain(..take).collect();
        for one in commit_creates(&kv, batch).await {
            // Alone, a create is always answered: nothing comes back.
            commit_creates(&kv, vec![one]).await;
        }
    }
}

/// Commits `batch` in as many transactions as duplicates and existing keys need, answering
/// each create. If a transaction of more than one create fails, its creates (and any still
/// waiting behind them) are handed back unanswered, to be tried alone.
async fn commit_creates(kv: &KvClient, mut batch: Vec<CreateRequest>) -> Vec<CreateRequest> {
    while !batch.is_empty() {
        // etcd refuses a transaction that puts one key twice: later duplicates wait a round.
        let mut keys = HashSet::new();
        let (now, later): (Vec<_>, Vec<_>) =
            batch.into_iter().partition(|r| keys.insert(r.key.clone()));
        let txn = Txn::new()
            .when(
                now.iter()
                    .map(|r| Compare::create_revision(r.key.as_str(), CompareOp::Equal, 0))
                    .collect::<Vec<_>>(),
            )
            .and_then(
                now.iter()
                    .map(|r| {
                        let options = r.lease.map(|id| PutOptions::new().with_lease(id));
                        TxnOp::put(r.key.as_str(), r.value.to_vec(), options)
                    })
                    .collect::<Vec<_>>(),
            )
            .or_else(
                now.iter()
                    .map(|r| TxnOp::get(r.key.as_str(), Some(GetOptions::new().with_keys_only())))
                    .collect::<Vec<_>>(),
            );
        let mut retry = Vec::new();
        match kv.clone().txn(txn).await {
            Err(_) if now.len() > 1 => {
                let mut unanswered = now;
                unanswered.extend(later);
                return unanswered;
            }
            Err(e) => {
                for r in now {
                    let _ = r.reply.send(Err(write_error(&e, &r.key)));
                }
            }
            Ok(resp) if resp.succeeded() => {
                let rev = header_revision(resp.header()).map_err(|e| e.to_string());
                for r in now {
                    let _ = r.reply.send(rev.clone().map_err(StoreError::Backend));
                }
            }
            Ok(resp) => {
                for (r, op) in now.into_iter().zip(resp.op_responses()) {
                    let exists = matches!(&op, TxnOpResponse::Get(g) if !g.kvs().is_empty());
                    if exists {
                        let key = r.key.clone();
                        let _ = r.reply.send(Err(StoreError::AlreadyExists { key }));
                    } else {
                        retry.push(r);
                    }
                }
            }
        }
        retry.extend(later);
        batch = retry;
    }
    Vec::new()
}

/// PEM material for TLS to etcd (kube-apiserver's `--etcd-cafile`, `--etcd-certfile` and
/// `--etcd-keyfile`, read).
#[derive(Clone, Default)]
pub struct EtcdTls {
    /// The CA etcd's serving certificate must come from; none: the system's roots.
    pub ca_pem: Option<String>,
    /// Client certificate and key, for an etcd with `--client-cert-auth`.
    pub client_pem: Option<(String, String)>,
}

impl std::fmt::Debug for EtcdTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("EtcdTls")
            .field("ca", &self.ca_pem.is_some())
            .field("client_certificate", &self.client_pem.is_some())
            .finish()
    }
}

impl EtcdStore {
    fn with_client(client: Client) -> Self {
        Self::with_response_limit(client, MAX_KV_RESPONSE_BYTES)
    }

    /// `with_client` with another limit on KV responses (tests use a small one).
    fn with_response_limit(client: Client, max_kv_response: usize) -> Self {
        let kv = client
            .kv_client()
            .max_decoding_message_size(max_kv_response);
        let watch = client
            .watch_client()
            .max_decoding_message_size(MAX_WATCH_RESPONSE_BYTES);
        let (tx, rx) = mpsc::channel(4096);
        tokio::spawn(batch_creates(kv.clone(), rx));
        EtcdStore {
            leases: Arc::new(lease::LeaseManager::new(client.lease_client())),
            kv,
            watch,
            creates: tx,
        }
    }

    /// The KV client (a cheap clone of one channel).
    fn kv(&self) -> KvClient {
        self.kv.clone()
    }

    /// The lease a write with `ttl` attaches its key to.
    async fn lease_for(&self, ttl: Option<Duration>) -> Result<Option<i64>, StoreError> {
        match ttl {
            None => Ok(None),
            Some(ttl) => self.leases.lease(ttl).await.map(Some).map_err(backend),
        }
    }
}

impl std::fmt::Debug for EtcdStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdStore").finish_non_exhaustive()
    }
}

impl EtcdStore {
    /// Connects to etcd at `endpoints` (`http://host:port` or `host:port`) and checks that it
    /// answers, so that a wrong address fails at startup rather than on the first request.
    pub async fn connect(endpoints: &[String]) -> Result<Self, StoreError> {
        Self::connect_with_tls(endpoints, None).await
    }

    /// [`EtcdStore::connect`] over TLS (`https://` endpoints): etcd's certificate checked
    /// against `tls.ca_pem`, and a client certificate presented when etcd runs with
    /// `--client-cert-auth`.
    pub async fn connect_with_tls(
        endpoints: &[String],
        tls: Option<EtcdTls>,
    ) -> Result<Self, StoreError> {
        if endpoints.is_empty() {
            return Err(StoreError::Backend(
                "no etcd endpoints given: pass --etcd-servers=http://HOST:2379".into(),
            ));
        }
        let options = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(5))
            // HTTP/2 pings detect a dead connection even while only watches are open, so a
            // watch whose etcd vanished ends with an error instead of hanging forever.
            .with_keep_alive(Duration::from_secs(10), Duration::from_secs(5))
            .with_keep_alive_while_idle(true)
            // Without this a member that lost its quorum keeps watches open but silent.
            .with_require_leader(true);
        let options = match tls {
            None => options,
            Some(tls) => {
                let mut config = etcd_client::TlsOptions::new();
                if let Some(ca) = tls.ca_pem {
                    config = config.ca_certificate(etcd_client::Certificate::from_pem(ca));
                }
                if let Some((cert, key)) = tls.client_pem {
                    config = config.identity(etcd_client::Identity::from_pem(cert, key));
                }
                options.with_tls(config)
            }
        };
        let client = Client::connect(endpoints, Some(options))
            .await
            .map_err(|e| {
                StoreError::Backend(format!(
                    "cannot connect to etcd at {}: {e}; check --etcd-servers and that etcd is running",
                    endpoints.join(",")
                ))
            })?;
        let store = Self::with_client(client);
        match tokio::time::timeout(CONNECT_PROBE_TIMEOUT, store.current_revision()).await {
            Ok(Ok(_)) => Ok(store),
            Ok(Err(e)) => Err(StoreError::Backend(format!(
                "etcd at {} does not answer: {e}; check --etcd-servers and that etcd is running",
                endpoints.join(",")
            ))),
            Err(_) => Err(StoreError::Backend(format!(
                "etcd at {} did not answer within {}s; check --etcd-servers and that etcd is running",
                endpoints.join(","),
                CONNECT_PROBE_TIMEOUT.as_secs()
            ))),
        }
    }

    /// Wraps an already connected client (for callers that need TLS or auth options).
    /// Must be called inside a Tokio runtime (it starts the create batchers).
    pub fn from_client(client: Client) -> Self {
        Self::with_client(client)
    }

    /// Asks etcd for its compaction revision, which its read errors do not carry: a watch from
    /// a compacted revision is answered with it. Returns 0 if etcd does not say in time.
    async fn compact_revision(&self, compacted_start: Revision) -> Revision {
        let ask = async {
            let options = WatchOptions::new().with_start_revision(compacted_start.max(1));
            let mut stream = self.watch.clone().watch(vec![0u8], Some(options)).await?;
            while let Some(resp) = stream.message().await? {
                if resp.compact_revision() > 0 {
                    return Ok(resp.compact_revision());
                }
                if resp.canceled() {
                    break;
                }
            }
            Ok::<_, etcd_client::Error>(0)
        };
        match tokio::time::timeout(COMPACT_REVISION_TIMEOUT, ask).await {
            Ok(Ok(rev)) => rev,
            _ => 0,
        }
    }

    /// Turns an etcd error on a read at `requested` into the trait's error.
    async fn read_error(&self, err: etcd_client::Error, requested: Revision) -> StoreError {
        match classify(&err) {
            ErrorClass::Compacted => StoreError::Compacted {
                requested,
                compacted: self.compact_revision(requested).await,
            },
            ErrorClass::Future => StoreError::FutureRevision {
                requested,
                current: self.current_revision().await.unwrap_or(0),
            },
            ErrorClass::Other => backend(err),
        }
    }
}

enum ErrorClass {
    Compacted,
    Future,
    Other,
}

/// etcd reports revision errors only as gRPC status messages
/// ("etcdserver: mvcc: required revision has been compacted", "... is a future revision").
fn classify(err: &etcd_client::Error) -> ErrorClass {
    let text = err.to_string();
    if text.contains("required revision has been compacted") {
        ErrorClass::Compacted
    } else if text.contains("required revision is a future revision") {
        ErrorClass::Future
    } else {
        ErrorClass::Other
    }
}

fn backend(err: etcd_client::Error) -> StoreError {
    StoreError::Backend(format!("etcd: {err}"))
}

/// Whether etcd refused a request for its size: etcd's own check ("etcdserver: request is too
/// large", over `--max-request-bytes`) or, far over it, gRPC's ("larger than max").
fn is_request_too_large(err: &etcd_client::Error) -> bool {
    let text = err.to_string();
    text.contains("request is too large") || text.contains("larger than max")
}

/// Whether a response was larger than the client accepts (tonic's "decoded message length too
/// large").
fn is_response_too_large(err: &etcd_client::Error) -> bool {
    err.to_string().contains("message length too large")
}

/// The error of a failed write of `key`.
fn write_error(err: &etcd_client::Error, key: &str) -> StoreError {
    if is_request_too_large(err) {
        StoreError::RequestTooLarge { key: key.into() }
    } else {
        StoreError::Backend(format!("etcd: {err}"))
    }
}

fn header_revision(header: Option<&etcd_client::ResponseHeader>) -> Result<Revision, StoreError> {
    header
        .map(|h| h.revision())
        .ok_or_else(|| StoreError::Backend("etcd answered without a response header".into()))
}

fn convert_kv(kv: etcd_client::KeyValue) -> Result<KeyValue, StoreError> {
    let (create_revision, mod_revision) = (kv.create_revision(), kv.mod_revision());
    let (key, value) = kv.into_key_value();
    let key = String::from_utf8(key)
        .map_err(|_| StoreError::Backend("etcd returned a key that is not UTF-8".into()))?;
    Ok(KeyValue {
        key,
        value: Bytes::from(value),
        create_revision,
        mod_revision,
    })
}

/// The first key after all keys that start with `prefix`, or `[0]` ("to the end of the key
/// space") when there is none.
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// The etcd range `[start, end)` covering keys with `prefix`, beginning strictly after
/// `start_after` when that lies inside it.
fn key_range(prefix: &str, start_after: Option<&str>) -> (Vec<u8>, Vec<u8>) {
    // An empty key would mean "just the key ''"; "\0" with range end "\0" means "every key".
    let mut start = if prefix.is_empty() {
        vec![0]
    } else {
        prefix.as_bytes().to_vec()
    };
    if let Some(after) = start_after {
        let mut next = after.as_bytes().to_vec();
        next.push(0);
        if next > start {
            start = next;
        }
    }
    (start, prefix_end(prefix.as_bytes()))
}

/// The key of the one `Get` in a failed transaction's `or_else` branch, if it exists.
fn else_get(resp: &TxnResponse) -> Result<Option<KeyValue>, StoreError> {
    for op in resp.op_responses() {
        if let TxnOpResponse::Get(mut get) = op {
            return get
                .take_kvs()
                .into_iter()
                .next()
                .map(convert_kv)
                .transpose();
        }
    }
    Ok(None)
}

fn convert_event(event: &etcd_client::Event) -> Result<WatchEvent, StoreError> {
    let kv = event
        .kv()
        .cloned()
        .ok_or_else(|| StoreError::Backend("etcd sent a watch event without a key".into()))?;
    let prev = event.prev_kv().cloned().map(convert_kv).transpose()?;
    let kv = convert_kv(kv)?;
    Ok(match event.event_type() {
        EventType::Put => WatchEvent {
            kind: EventKind::Put,
            kv,
            prev,
        },
        // etcd's delete event carries only the key and the delete's revision; the trait
        // promises the last value, which is in prev_kv (requested with `with_prev_key`).
        EventType::Delete => {
            let (value, create_revision) = prev
                .as_ref()
                .map(|p| (p.value.clone(), p.create_revision))
                .unwrap_or_default();
            WatchEvent {
                kind: EventKind::Delete,
                kv: KeyValue {
                    key: kv.key,
                    value,
                    create_revision,
                    mod_revision: kv.mod_revision,
                },
                prev,
            }
        }
    })
}

/// Maps one watch response to the events it carries, or to the error that ends the stream.
fn convert_response(
    resp: &etcd_client::WatchResponse,
    requested: Revision,
) -> Result<Vec<WatchEvent>, StoreError> {
    if resp.compact_revision() > 0 {
        return Err(StoreError::Compacted {
            requested,
            compacted: resp.compact_revision(),
        });
    }
    if resp.canceled() {
        return Err(StoreError::Backend(format!(
            "etcd cancelled the watch: {}",
            resp.cancel_reason()
        )));
    }
    resp.events().iter().map(convert_event).collect()
}

#[async_trait]
impl Store for EtcdStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, StoreError> {
        let mut resp = self.kv().get(key, None).await.map_err(backend)?;
        resp.take_kvs()
            .into_iter()
            .next()
            .map(convert_kv)
            .transpose()
    }

    async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
        revision: Option<Revision>,
    ) -> Result<ListResult, StoreError> {
        let (mut start, end) = key_range(prefix, start_after);
        let requested = revision.filter(|r| *r > 0);
        // The revision the pages are read at: the one asked for, else the first page's.
        let mut at = requested;
        // How many keys one read asks for: the caller's limit (0: all) until a response is
        // too large for the client, then halves of what was too much.
        let mut page = limit;
        let mut items: Vec<KeyValue> = Vec::new();
        loop {
            let want = match (limit, page) {
                (0, page) => page,
                (limit, page) => page.min(limit - items.len()),
            };
            let mut options = GetOptions::new()
                .with_range(end.clone())
                .with_limit(i64::try_from(want).unwrap_or(i64::MAX));
            if let Some(rev) = at {
                options = options.with_revision(rev);
            }
            let mut resp = match self.kv().get(start.clone(), Some(options)).await {
                Ok(resp) => resp,
                Err(e) if is_response_too_large(&e) && want != 1 => {
                    // Objects can be up to 1.5 MiB, so a page of 1,000 can be far larger
                    // than any limit worth setting: read the range in smaller pages instead.
                    page = if want == 0 { 512 } else { want / 2 };
                    continue;
                }
                Err(e) => return Err(self.read_error(e, requested.unwrap_or(0)).await),
            };
            // etcd's header names its newest revision, not the one the read was served at.
            let served = match at {
                Some(rev) => rev,
                None => header_revision(resp.header())?,
            };
            at = Some(served);
            let more = resp.more();
            for kv in resp.take_kvs() {
                items.push(convert_kv(kv)?);
            }
            let full = limit > 0 && items.len() >= limit;
            match items.last() {
                Some(last) if more && !full => {
                    start = last.key.as_bytes().to_vec();
                    start.push(0);
                }
                _ => {
                    return Ok(ListResult {
                        items,
                        revision: served,
                        more,
                    });
                }
            }
        }
    }

    async fn count(&self, prefix: &str) -> Result<usize, StoreError> {
        let (start, end) = key_range(prefix, None);
        let options = GetOptions::new().with_range(end).with_count_only();
        let resp = self.kv().get(start, Some(options)).await.map_err(backend)?;
        usize::try_from(resp.count())
            .map_err(|_| StoreError::Backend(format!("etcd returned count {}", resp.count())))
    }

    async fn create_with_ttl(
        &self,
        key: &str,
        value: Bytes,
        ttl: Option<Duration>,
    ) -> Result<Revision, StoreError> {
        let (reply, answer) = oneshot::channel();
        let request = CreateRequest {
            key: key.to_string(),
            value,
            lease: self.lease_for(ttl).await?,
            reply,
        };
        let gone = || StoreError::Backend("etcd store is shutting down".into());
        self.creates.send(request).await.map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }

    async fn update_with_ttl(
        &self,
        key: &str,
        expected: Revision,
        value: Bytes,
        ttl: Option<Duration>,
    ) -> Result<Revision, StoreError> {
        // Without a lease the put detaches the key from any lease it had: it no longer expires.
        let put = self
            .lease_for(ttl)
            .await?
            .map(|id| PutOptions::new().with_lease(id));
        // A missing key has mod revision 0, so without the create-revision guard an update
        // expecting 0 would create the key.
        let txn = Txn::new()
            .when([
                Compare::mod_revision(key, CompareOp::Equal, expected),
                Compare::create_revision(key, CompareOp::Greater, 0),
            ])
            .and_then([TxnOp::put(key, Vec::from(value), put)])
            .or_else([TxnOp::get(key, None)]);
        let resp = self.kv().txn(txn).await.map_err(|e| write_error(&e, key))?;
        if resp.succeeded() {
            return header_revision(resp.header());
        }
        match else_get(&resp)? {
            Some(current) => Err(StoreError::Conflict {
                key: key.into(),
                expected,
                current: Some(current),
            }),
            None => Err(StoreError::NotFound { key: key.into() }),
        }
    }

    async fn delete(
        &self,
        key: &str,
        expected: Option<Revision>,
    ) -> Result<(KeyValue, Revision), StoreError> {
        let delete = DeleteOptions::new().with_prev_key();
        let (mut deleted, revision) = match expected {
            None => {
                let mut resp = self.kv().delete(key, Some(delete)).await.map_err(backend)?;
                (resp.take_prev_kvs(), header_revision(resp.header())?)
            }
            Some(expected) => {
                let txn = Txn::new()
                    .when([
                        Compare::mod_revision(key, CompareOp::Equal, expected),
                        Compare::create_revision(key, CompareOp::Greater, 0),
                    ])
                    .and_then([TxnOp::delete(key, Some(delete))])
                    .or_else([TxnOp::get(key, None)]);
                let resp = self.kv().txn(txn).await.map_err(backend)?;
                if !resp.succeeded() {
                    return Err(match else_get(&resp)? {
                        Some(current) => StoreError::Conflict {
                            key: key.into(),
                            expected,
                            current: Some(current),
                        },
                        None => StoreError::NotFound { key: key.into() },
                    });
                }
                let prev = resp
                    .op_responses()
                    .into_iter()
                    .find_map(|op| match op {
                        TxnOpResponse::Delete(mut d) => Some(d.take_prev_kvs()),
                        _ => None,
                    })
                    .unwrap_or_default();
                (prev, header_revision(resp.header())?)
            }
        };
        match deleted.pop() {
            Some(kv) => Ok((convert_kv(kv)?, revision)),
            None => Err(StoreError::NotFound { key: key.into() }),
        }
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream, StoreError> {
        let start_revision = after.max(0) + 1;
        let (start, end) = key_range(prefix, None);

        // etcd reports a compacted start only inside the stream, after the watch is created.
        // A read at the start revision tells us up front, so both backends fail the same way
        // (from `watch` itself). A compaction racing with us still ends the stream with
        // `Compacted`, just one item later.
        let probe = GetOptions::new()
            .with_range(end.clone())
            .with_count_only()
            .with_revision(start_revision);
        if let Err(e) = self.kv().get(start.clone(), Some(probe)).await {
            match classify(&e) {
                ErrorClass::Compacted => {
                    return Err(StoreError::Compacted {
                        requested: start_revision,
                        compacted: self.compact_revision(start_revision).await,
                    });
                }
                // A watch may start in the future: it waits for those revisions.
                ErrorClass::Future => {}
                ErrorClass::Other => return Err(backend(e)),
            }
        }

        let options = WatchOptions::new()
            .with_range(end)
            .with_start_revision(start_revision)
            .with_prev_key();
        let mut stream = self
            .watch
            .clone()
            .watch(start, Some(options))
            .await
            .map_err(backend)?;
        // Wait for etcd to confirm the watch, so errors such as "no leader" surface here.
        match stream.message().await.map_err(backend)? {
            Some(resp) if resp.created() && !resp.canceled() => {}
            Some(resp) => {
                return Err(convert_response(&resp, start_revision)
                    .err()
                    .unwrap_or_else(|| {
                        StoreError::Backend("etcd did not confirm the watch".into())
                    }));
            }
            None => return Err(StoreError::Backend("etcd closed the watch at once".into())),
        }

        // The etcd stream (which also owns the request sender that keeps the watch alive) lives
        // in the unfold state; dropping our stream drops it and cancels the gRPC call.
        let events = futures::stream::unfold(Some(stream), move |state| async move {
            let mut stream = state?;
            loop {
                let batch = match stream.message().await {
                    Ok(Some(resp)) => convert_response(&resp, start_revision),
                    Ok(None) => Err(StoreError::Backend(
                        "etcd ended the watch; watch again from the last revision seen".into(),
                    )),
                    Err(e) => Err(StoreError::Backend(format!(
                        "etcd watch failed: {e}; watch again from the last revision seen"
                    ))),
                };
                match batch {
                    // Progress notifications carry no events.
                    Ok(events) if events.is_empty() => continue,
                    Ok(events) => {
                        return Some((
                            events.into_iter().map(Ok).collect::<Vec<_>>(),
                            Some(stream),
                        ));
                    }
                    // An error is the last item: the next poll sees `None` state and ends.
                    Err(e) => return Some((vec![Err(e)], None)),
                }
            }
        })
        .flat_map(futures::stream::iter);
        Ok(events.boxed())
    }

    async fn current_revision(&self) -> Result<Revision, StoreError> {
        let options = GetOptions::new().with_count_only();
        let resp = self
            .kv()
            .get(vec![0u8], Some(options))
            .await
            .map_err(backend)?;
        header_revision(resp.header())
    }

    async fn compact(&self, revision: Revision) -> Result<(), StoreError> {
        match self
            .kv()
            .compact(revision, Some(CompactionOptions::new()))
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => match classify(&e) {
                // Already compacted at or past `revision`: nothing left to do.
                ErrorClass::Compacted => Ok(()),
                ErrorClass::Future => Err(StoreError::FutureRevision {
                    requested: revision,
                    current: self.current_revision().await.unwrap_or(0),
                }),
                ErrorClass::Other => Err(backend(e)),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TestEtcd;

    #[test]
    fn prefix_end_increments_the_last_byte_below_0xff() {
        let cases: &[(&[u8], &[u8])] = &[
            (b"/registry/pods/", b"/registry/pods0"),
            (b"a\xff", b"b"),
            (b"\xff\xff", b"\0"),
            (b"", b"\0"),
        ];
        for (prefix, end) in cases {
            assert_eq!(prefix_end(prefix), end.to_vec(), "prefix {prefix:?}");
        }
    }

    #[test]
    fn key_range_starts_after_start_after_only_inside_the_prefix() {
        assert_eq!(key_range("/a/", Some("/a/x")).0, b"/a/x\0".to_vec());
        assert_eq!(key_range("/a/", Some("/")).0, b"/a/".to_vec());
        assert_eq!(key_range("", None), (vec![0], vec![0]));
    }

    #[test]
    fn batches_fill_up_to_the_byte_and_op_limits() {
        let cases: &[(&[usize], usize, usize, usize)] = &[
            // (sizes in queue order, max bytes, max ops, expected batch length)
            (&[], 100, 10, 0),
            (&[10, 10, 10], 100, 10, 3),
            (&[40, 40, 40], 100, 10, 2),
            (&[50, 50, 1], 100, 10, 2),
            (&[10, 10, 10], 100, 2, 2),
            // An oversized create goes alone, first or not at all until it is first.
            (&[500, 10], 100, 10, 1),
            (&[10, 500, 10], 100, 10, 1),
            // Exactly at the limit fits.
            (&[60, 40], 100, 10, 2),
        ];
        for (sizes, max_bytes, max_ops, want) in cases {
            assert_eq!(
                batch_len(sizes.iter().copied(), *max_bytes, *max_ops),
                *want,
                "sizes {sizes:?}, max {max_bytes} bytes, {max_ops} ops"
            );
        }
    }

    #[test]
    fn ten_objects_of_900_kib_go_in_ten_transactions() {
        let value = Bytes::from(vec![0u8; 900 << 10]);
        let (reply, _) = oneshot::channel();
        let big = CreateRequest {
            key: "/registry/configmaps/default/big".into(),
            value,
            lease: None,
            reply,
        };
        let sizes = std::iter::repeat_n(big.txn_bytes(), 10);
        assert_eq!(batch_len(sizes, MAX_BATCH_BYTES, MAX_BATCH), 1);
        let small = std::iter::repeat_n(200, 200);
        assert_eq!(batch_len(small, MAX_BATCH_BYTES, MAX_BATCH), MAX_BATCH);
    }

    /// Large creates at once with small ones: each too-large one fails alone with etcd's
    /// "request is too large", the rest succeed, and a list of them all (far over gRPC's
    /// default 4 MiB message) works, also in pages.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn large_creates_fail_alone_and_large_lists_work() -> anyhow::Result<()> {
        let etcd = tokio::task::spawn_blocking(TestEtcd::start).await?;
        let store = EtcdStore::connect(std::slice::from_ref(&etcd.endpoint)).await?;
        let mut tasks = Vec::new();
        for i in 0..10 {
            let store = store.clone();
            let key = format!("/cm/big{i}");
            tasks.push(tokio::spawn(async move {
                (
                    key.clone(),
                    store.create(&key, Bytes::from(vec![b'b'; 900 << 10])).await,
                )
            }));
        }
        for i in 0..40 {
            let store = store.clone();
            let key = format!("/cm/small{i:02}");
            tasks.push(tokio::spawn(async move {
                (
                    key.clone(),
                    store.create(&key, Bytes::from_static(b"s")).await,
                )
            }));
        }
        for i in 0..2 {
            let store = store.clone();
            let key = format!("/cm/huge{i}");
            tasks.push(tokio::spawn(async move {
                (
                    key.clone(),
                    store.create(&key, Bytes::from(vec![b'h'; 2 << 20])).await,
                )
            }));
        }
        for task in tasks {
            let (key, result) = task.await?;
            if key.starts_with("/cm/huge") {
                assert!(
                    matches!(&result, Err(StoreError::RequestTooLarge { key: k }) if *k == key),
                    "{key}: {result:?}"
                );
            } else {
                assert!(result.is_ok(), "{key}: {result:?}");
            }
        }
        // An update too large fails the same way.
        let small = store.get("/cm/small00").await?.expect("created");
        let too_big = store
            .update(
                "/cm/small00",
                small.mod_revision,
                Bytes::from(vec![0; 2 << 20]),
            )
            .await;
        assert!(
            matches!(too_big, Err(StoreError::RequestTooLarge { .. })),
            "{too_big:?}"
        );

        let all = store.list("/cm/", None, 0, None).await?;
        assert_eq!(all.items.len(), 50);
        assert!(!all.more);
        // The watch cache's pages of 1,000 keys.
        let page = store.list("/cm/", None, 1000, None).await?;
        assert_eq!((page.items.len(), page.more), (50, false));
        let first = store.list("/cm/", None, 5, None).await?;
        assert_eq!((first.items.len(), first.more), (5, true));
        Ok(())
    }

    /// A page larger than the client takes is read in smaller pages: with gRPC's default
    /// 4 MiB, a list of ten 900 KiB values (9 MiB) still works, whole or paged, at one
    /// revision.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn lists_larger_than_a_response_are_read_in_smaller_pages() -> anyhow::Result<()> {
        let etcd = tokio::task::spawn_blocking(TestEtcd::start).await?;
        let client = Client::connect([etcd.endpoint.as_str()], None).await?;
        let store = EtcdStore::with_response_limit(client, 4 << 20);
        for i in 0..10 {
            store
                .create(&format!("/big/{i}"), Bytes::from(vec![b'v'; 900 << 10]))
                .await?;
        }
        let at = store.current_revision().await?;
        // Written after the list's revision: not in it.
        store.create("/big/later", Bytes::from_static(b"x")).await?;
        let all = store.list("/big/", None, 0, Some(at)).await?;
        assert_eq!((all.items.len(), all.more, all.revision), (10, false, at));
        let latest = store.list("/big/", None, 1000, None).await?;
        assert_eq!((latest.items.len(), latest.more), (11, false));
        let page = store.list("/big/", None, 8, None).await?;
        assert_eq!((page.items.len(), page.more), (8, true));
        let rest = store
            .list("/big/", Some(&page.items[7].key), 8, Some(page.revision))
            .await?;
        assert_eq!((rest.items.len(), rest.more), (3, false));
        Ok(())
    }

    #[tokio::test]
    async fn watch_ends_with_an_error_when_etcd_dies() -> anyhow::Result<()> {
        let etcd = tokio::task::spawn_blocking(TestEtcd::start).await?;
        let store = EtcdStore::connect(std::slice::from_ref(&etcd.endpoint)).await?;
        let mut watch = store.watch("/", store.current_revision().await?).await?;
        drop(etcd);
        let item = tokio::time::timeout(Duration::from_secs(30), watch.next()).await?;
        assert!(
            matches!(item, Some(Err(StoreError::Backend(_)))),
            "got {item:?}"
        );
        assert!(
            watch.next().await.is_none(),
            "the error must end the stream"
        );
        Ok(())
    }

    #[tokio::test]
    async fn connect_to_nothing_fails_with_advice() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or(1);
        match EtcdStore::connect(&[format!("http://127.0.0.1:{port}")]).await {
            Err(StoreError::Backend(message)) => {
                assert!(message.contains("--etcd-servers"), "{message}")
            }
            other => panic!("expected a Backend error, got {other:?}"),
        }
    }
}
