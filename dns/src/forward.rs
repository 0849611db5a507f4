//! Names outside the cluster: forwarded to the upstream resolvers (`--upstream`, else the
//! node's `/etc/resolv.conf`), in order until one answers, over UDP and over TCP when the
//! answer was truncated; answers are cached for their TTL (capped), as CoreDNS's `forward` and
//! `cache` plugins do together.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hickory_proto::op::{Edns, Message, MessageType, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpStream, UdpSocket};

/// How long one upstream gets to answer before the next is tried.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);
/// The longest a positive answer is cached (CoreDNS's cache caps at an hour; a cluster's
/// resolver restarting every so often is happier with fresher answers).
const MAX_POSITIVE_TTL: u32 = 300;
/// The longest a negative answer is cached.
const MAX_NEGATIVE_TTL: u32 = 60;
/// How long a negative answer without an SOA is cached.
const DEFAULT_NEGATIVE_TTL: u32 = 5;
/// The largest UDP answer asked of an upstream (the DNS flag day 2020 value).
pub const EDNS_PAYLOAD: u16 = 1232;

/// Why forwarding failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no upstream resolver is configured (give --upstream, or nameservers in resolv.conf)")]
    NoUpstream,
    #[error("no upstream resolver answered (last error: {0})")]
    Unanswered(String),
}

/// An upstream's answer, as it goes to the client (the id and flags are the server's).
#[derive(Debug, Clone, PartialEq)]
pub struct Forwarded {
    pub rcode: ResponseCode,
    pub answers: Vec<Record>,
    pub authorities: Vec<Record>,
    pub additionals: Vec<Record>,
}

/// The upstream resolvers and the answer cache.
#[derive(Debug)]
pub struct Forwarder {
    upstreams: Vec<SocketAddr>,
    cache: Mutex<Cache>,
}

impl Forwarder {
    /// Forwards to `upstreams` in order, caching up to `cache_size` answers.
    pub fn new(upstreams: Vec<SocketAddr>, cache_size: usize) -> Forwarder {
        Forwarder {
            upstreams,
            cache: Mutex::new(Cache {
                capacity: cache_size,
                entries: HashMap::new(),
            }),
        }
    }

    /// The upstream resolvers.
    pub fn upstreams(&self) -> &[SocketAddr] {
        &self.upstreams
    }

    /// The answer to `query`, from the cache (with TTLs counted down) or an upstream. The
    /// boolean says whether the cache answered.
    pub async fn resolve(&self, query: &Query) -> Result<(Forwarded, bool), Error> {
        let key = CacheKey::of(query);
        if let Some(hit) = self.cache.lock().expect("cache lock").get(&key) {
            return Ok((hit, true));
        }
        let answer = self.ask_upstreams(query).await?;
        if let Some(ttl) = cache_ttl(&answer) {
            self.cache
                .lock()
                .expect("cache lock")
                .insert(key, answer.clone(), ttl);
        }
        Ok((answer, false))
    }

    async fn ask_upstreams(&self, query: &Query) -> Result<Forwarded, Error> {
        let mut last = None;
        for upstream in &self.upstreams {
            match ask(*upstream, query).await {
                Ok(m) => {
                    return Ok(Forwarded {
                        rcode: m.metadata.response_code,
                        answers: m.answers,
                        authorities: m.authorities,
                        additionals: m.additionals,
                    });
                }
                Err(e) => {
                    tracing::debug!(%upstream, name = %query.name, error = %e, "upstream failed");
                    last = Some(format!("{upstream}: {e}"));
                }
            }
        }
        Err(last.map(Error::Unanswered).unwrap_or(Error::NoUpstream))
    }
}

/// Asks one upstream over UDP, and again over TCP if the answer was truncated.
async fn ask(upstream: SocketAddr, query: &Query) -> std::io::Result<Message> {
    let mut request = Message::query();
    request.metadata.recursion_desired = true;
    request.add_query(query.clone());
    let mut edns = Edns::new();
    edns.set_max_payload(EDNS_PAYLOAD);
    request.set_edns(edns);
    let bytes = request.to_vec().map_err(std::io::Error::other)?;
    let id = request.metadata.id;
    let udp = tokio::time::timeout(UPSTREAM_TIMEOUT, ask_udp(upstream, &bytes, id, query)).await;
    let message = match udp {
        Ok(r) => r?,
        Err(_) => return Err(std::io::ErrorKind::TimedOut.into()),
    };
    if !message.metadata.truncation {
        return Ok(message);
    }
    match tokio::time::timeout(UPSTREAM_TIMEOUT, ask_tcp(upstream, &bytes, id)).await {
        Ok(r) => r,
        Err(_) => Err(std::io::ErrorKind::TimedOut.into()),
    }
}

async fn ask_udp(
    upstream: SocketAddr,
    bytes: &[u8],
    id: u16,
    query: &Query,
) -> std::io::Result<Message> {
    let local: IpAddr = match upstream {
        SocketAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
        SocketAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
    };
    // A socket per query (a random source port): an answer can only come from the upstream
    // asked, and a spoofed one must guess the port as well as the id.
    let socket = UdpSocket::bind((local, 0)).await?;
    socket.connect(upstream).await?;
    socket.send(bytes).await?;
    let mut buf = vec![0u8; 65535];
    loop {
        let n = socket.recv(&mut buf).await?;
        let Ok(m) = Message::from_vec(&buf[..n]) else {
            continue;
        };
        let same_question = m.queries.first().is_some_and(|q| {
            q.name.eq_ignore_root(&query.name) && q.query_type == query.query_type
        });
        if m.metadata.id == id && m.metadata.message_type == MessageType::Response && same_question
        {
            return Ok(m);
        }
    }
}

async fn ask_tcp(upstream: SocketAddr, bytes: &[u8], id: u16) -> std::io::Result<Message> {
    let mut stream = TcpStream::connect(upstream).await?;
    let len = u16::try_from(bytes.len()).map_err(std::io::Error::other)?;
    let mut framed = len.to_be_bytes().to_vec();
    framed.extend_from_slice(bytes);
    stream.write_all(&framed).await?;
    let len = stream.read_u16().await?;
    let mut buf = vec![0u8; usize::from(len)];
    stream.read_exact(&mut buf).await?;
    let m = Message::from_vec(&buf).map_err(std::io::Error::other)?;
    if m.metadata.id != id {
        return Err(std::io::Error::other("answer for another query"));
    }
    Ok(m)
}

/// How long an answer may be cached: the least TTL of its answers (positive), or of the SOA's
/// TTL and minimum (negative, RFC 2308); failures are not cached.
fn cache_ttl(answer: &Forwarded) -> Option<u32> {
    match answer.rcode {
        ResponseCode::NoError if !answer.answers.is_empty() => answer
            .answers
            .iter()
            .map(|r| r.ttl)
            .min()
            .map(|t| t.min(MAX_POSITIVE_TTL)),
        ResponseCode::NoError | ResponseCode::NXDomain => {
            let soa = answer.authorities.iter().find_map(|r| match &r.data {
                RData::SOA(soa) => Some(r.ttl.min(soa.minimum)),
                _ => None,
            });
            Some(soa.unwrap_or(DEFAULT_NEGATIVE_TTL).min(MAX_NEGATIVE_TTL))
        }
        _ => None,
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct CacheKey {
    name: Name,
    qtype: RecordType,
    class: DNSClass,
}

impl CacheKey {
    fn of(q: &Query) -> CacheKey {
        CacheKey {
            name: q.name.to_lowercase(),
            qtype: q.query_type,
            class: q.query_class,
        }
    }
}

#[derive(Debug)]
struct Cache {
    capacity: usize,
    entries: HashMap<CacheKey, (Forwarded, Instant, Instant)>,
}

impl Cache {
    /// The cached answer with its TTLs lowered by the time it has been kept.
    fn get(&mut self, key: &CacheKey) -> Option<Forwarded> {
        let now = Instant::now();
        let (answer, stored, expires) = self.entries.get(key)?;
        if now >= *expires {
            self.entries.remove(key);
            return None;
        }
        let age = u32::try_from(now.duration_since(*stored).as_secs()).unwrap_or(u32::MAX);
        let mut answer = answer.clone();
        for r in answer
            .answers
            .iter_mut()
            .chain(answer.authorities.iter_mut())
            .chain(answer.additionals.iter_mut())
        {
            r.ttl = r.ttl.saturating_sub(age);
        }
        Some(answer)
    }

    fn insert(&mut self, key: CacheKey, answer: Forwarded, ttl: u32) {
        if self.capacity == 0 || ttl == 0 {
            return;
        }
        let now = Instant::now();
        if self.entries.len() >= self.capacity {
            self.entries.retain(|_, (_, _, expires)| *expires > now);
        }
        if self.entries.len() >= self.capacity {
            // Still full of live answers: start over rather than track recency (a small cache in
            // front of resolvers that have their own).
            self.entries.clear();
        }
        let expires = now + Duration::from_secs(u64::from(ttl));
        self.entries.insert(key, (answer, now, expires));
    }
}

/// The nameservers of a resolv.conf (port 53), in order.
pub fn resolv_conf_nameservers(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            (words.next()? == "nameserver").then_some(())?;
            // A scoped IPv6 address (`fe80::1%eth0`) cannot be used from here; skip it.
            let ip: IpAddr = words.next()?.parse().ok()?;
            Some(SocketAddr::new(ip, 53))
        })
        .collect()
}

/// Whether forwarding to `upstream` would ask this server itself (serving on `own`): the same
/// address, or a loopback one on the same port when serving on every address. Such an
/// upstream would loop a query until it times out.
pub fn is_self(upstream: SocketAddr, own: SocketAddr) -> bool {
    upstream == own
        || (own.ip().is_unspecified()
            && upstream.port() == own.port()
            && (upstream.ip().is_loopback() || upstream.ip().is_unspecified()))
}

/// An `--upstream` value: `IP` (port 53) or `IP:port` (`[v6]:port`).
pub fn parse_upstream(s: &str) -> Result<SocketAddr, String> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, 53));
    }
    s.parse::<SocketAddr>().map_err(|_| {
        format!("{s:?} is not IP or IP:port (e.g. 10.0.0.2, 10.0.0.2:5353, [fd00::2]:53)")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::rr::rdata::{A, SOA};

    fn a(name: &str, ttl: u32) -> Record {
        Record::from_rdata(
            Name::from_ascii(name).unwrap(),
            ttl,
            RData::A(A::new(192, 0, 2, 1)),
        )
    }

    #[test]
    fn resolv_conf_and_upstream_flags() {
        let conf = "# comment\nsearch example.test\nnameserver 192.0.2.53\nnameserver fd00::53\nnameserver fe80::1%eth0\noptions ndots:5\n";
        assert_eq!(
            resolv_conf_nameservers(conf),
            vec![
                "192.0.2.53:53".parse::<SocketAddr>().unwrap(),
                "[fd00::53]:53".parse().unwrap()
            ]
        );
        assert_eq!(parse_upstream("127.0.0.1").unwrap().port(), 53);
        assert_eq!(parse_upstream("127.0.0.1:5353").unwrap().port(), 5353);
        assert_eq!(parse_upstream("[::1]:5353").unwrap().port(), 5353);
        assert!(parse_upstream("resolver").is_err());
        let own: SocketAddr = "0.0.0.0:53".parse().unwrap();
        assert!(is_self("127.0.0.1:53".parse().unwrap(), own));
        assert!(!is_self("127.0.0.1:5353".parse().unwrap(), own));
        assert!(!is_self("192.0.2.53:53".parse().unwrap(), own));
        let own: SocketAddr = "192.0.2.1:53".parse().unwrap();
        assert!(is_self("192.0.2.1:53".parse().unwrap(), own));
        assert!(!is_self("127.0.0.53:53".parse().unwrap(), own));
    }

    #[test]
    fn cache_ttls_follow_the_answer() {
        let positive = Forwarded {
            rcode: ResponseCode::NoError,
            answers: vec![a("x.test.", 30), a("x.test.", 20)],
            authorities: vec![],
            additionals: vec![],
        };
        assert_eq!(cache_ttl(&positive), Some(20));
        let long = Forwarded {
            answers: vec![a("x.test.", 86400)],
            ..positive.clone()
        };
        assert_eq!(cache_ttl(&long), Some(MAX_POSITIVE_TTL));
        let soa = SOA::new(
            Name::from_ascii("ns.test.").unwrap(),
            Name::from_ascii("h.test.").unwrap(),
            1,
            1,
            1,
            1,
            30,
        );
        let negative = Forwarded {
            rcode: ResponseCode::NXDomain,
            answers: vec![],
            authorities: vec![Record::from_rdata(
                Name::from_ascii("test.").unwrap(),
                3600,
                RData::SOA(soa),
            )],
            additionals: vec![],
        };
        assert_eq!(cache_ttl(&negative), Some(30));
        let failed = Forwarded {
            rcode: ResponseCode::ServFail,
            ..negative
        };
        assert_eq!(cache_ttl(&failed), None);
    }

    #[test]
    fn cached_answers_are_kept_within_capacity() {
        let mut cache = Cache {
            capacity: 2,
            entries: HashMap::new(),
        };
        let key = |n: &str| CacheKey {
            name: Name::from_ascii(n).unwrap(),
            qtype: RecordType::A,
            class: DNSClass::IN,
        };
        let answer = Forwarded {
            rcode: ResponseCode::NoError,
            answers: vec![a("x.test.", 10)],
            authorities: vec![],
            additionals: vec![],
        };
        cache.insert(key("x.test."), answer.clone(), 10);
        cache.insert(key("never.test."), answer.clone(), 0);
        assert!(cache.get(&key("never.test.")).is_none());
        let hit = cache.get(&key("x.test.")).expect("cached");
        assert!(hit.answers[0].ttl <= 10);
        // Full of live answers: a new one still goes in.
        cache.insert(key("y.test."), answer.clone(), 10);
        cache.insert(key("z.test."), answer, 10);
        assert!(cache.get(&key("z.test.")).is_some());
        assert!(cache.entries.len() <= 2);
    }
}
