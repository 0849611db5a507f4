//! The DNS server: queries over UDP and TCP (RFC 1035, with EDNS payload sizes and truncation),
//! answered from the cluster [`Zone`] or by the [`Forwarder`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, Record, RecordType};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio_util::sync::CancellationToken;

use crate::forward::{EDNS_PAYLOAD, Forwarder};
use crate::metrics::Metrics;
use crate::zone::{Answer, Cluster, Outcome, Zone};

/// How long a TCP connection may sit without a query (RFC 7766 suggests seconds).
const TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// How many CNAMEs are followed for one query.
const MAX_CHASE: usize = 8;

/// How a query came in (the UDP one limits the answer's size).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

impl Transport {
    fn label(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
        }
    }
}

/// Answers queries: the zone for cluster names, the forwarder for the rest.
pub struct Handler<C> {
    pub zone: Zone,
    pub cluster: C,
    pub forwarder: Forwarder,
    pub metrics: Arc<Metrics>,
}

impl<C: Cluster + Send + Sync + 'static> Handler<C> {
    /// The answer to the request in `bytes` (`None`: not a request worth an answer).
    pub async fn handle(&self, bytes: &[u8], transport: Transport) -> Option<Vec<u8>> {
        let started = Instant::now();
        let request = match Message::from_vec(bytes) {
            Ok(m) => m,
            Err(_) => return formerr(bytes),
        };
        if request.metadata.message_type != MessageType::Query {
            return None;
        }
        let mut response = Message::response(request.metadata.id, request.metadata.op_code);
        response.metadata.recursion_desired = request.metadata.recursion_desired;
        response.metadata.checking_disabled = request.metadata.checking_disabled;
        response.metadata.recursion_available = true;
        response.add_queries(request.queries.iter().cloned());
        if request.edns.is_some() {
            let mut edns = Edns::new();
            edns.set_max_payload(EDNS_PAYLOAD);
            response.set_edns(edns);
        }
        let zone_label = match (request.metadata.op_code, request.queries.as_slice()) {
            (OpCode::Query, [query]) => self.answer(query, &mut response).await,
            (OpCode::Query, _) => {
                response.metadata.response_code = ResponseCode::FormErr;
                "invalid"
            }
            _ => {
                response.metadata.response_code = ResponseCode::NotImp;
                "invalid"
            }
        };
        self.metrics.request(
            transport.label(),
            zone_label,
            response.metadata.response_code,
            started.elapsed(),
        );
        let limit = match transport {
            Transport::Tcp => usize::from(u16::MAX),
            Transport::Udp => usize::from(request.max_payload().min(EDNS_PAYLOAD)),
        };
        let encoded = response.to_vec().ok()?;
        if encoded.len() <= limit {
            return Some(encoded);
        }
        // Too big for the client's UDP buffer: the question alone, TC set, so it asks over TCP.
        response.truncate().to_vec().ok()
    }

    /// Fills `response` for one query; returns which zone answered (a metrics label).
    async fn answer(&self, query: &Query, response: &mut Message) -> &'static str {
        let mut name = query.name.clone();
        let qtype = query.query_type;
        let mut label = "cluster";
        for round in 0..=MAX_CHASE {
            let outcome = self.zone.resolve(&self.cluster, &name, qtype);
            match outcome {
                Outcome::Answer(a) => {
                    let Answer {
                        rcode,
                        answers,
                        authorities,
                        additionals,
                        chase,
                    } = a;
                    if round == 0 {
                        response.metadata.authoritative = true;
                    }
                    response.metadata.response_code = rcode;
                    response.answers.extend(answers);
                    if chase.is_none() || round == MAX_CHASE {
                        response.authorities.extend(authorities);
                        response.additionals.extend(additionals);
                        return label;
                    }
                    name = chase.unwrap_or_default();
                }
                Outcome::NotOurs => {
                    if round == 0 {
                        label = "forward";
                    }
                    self.forward(&name, query, response).await;
                    return label;
                }
            }
        }
        label
    }

    /// Asks the forwarder for `name` (the query's type and class), into `response`.
    async fn forward(&self, name: &Name, query: &Query, response: &mut Message) {
        let mut q = Query::query(name.clone(), query.query_type);
        q.set_query_class(query.query_class);
        match self.forwarder.resolve(&q).await {
            Ok((f, cached)) => {
                self.metrics.cache(cached);
                response.metadata.response_code = f.rcode;
                response.answers.extend(f.answers);
                response.authorities.extend(f.authorities);
                response
                    .additionals
                    .extend(f.additionals.into_iter().filter(not_opt));
            }
            Err(e) => {
                tracing::debug!(%name, error = %e, "forwarding failed");
                response.metadata.response_code = ResponseCode::ServFail;
            }
        }
    }
}

fn not_opt(r: &Record) -> bool {
    r.record_type() != RecordType::OPT
}

/// FORMERR for a request whose header can be read but not the rest.
fn formerr(bytes: &[u8]) -> Option<Vec<u8>> {
    if bytes.len() < 12 || bytes[2] & 0x80 != 0 {
        return None;
    }
    let id = u16::from_be_bytes([bytes[0], bytes[1]]);
    Message::error_msg(id, OpCode::Query, ResponseCode::FormErr)
        .to_vec()
        .ok()
}

/// Serves UDP queries on `socket` until `shutdown`. Each query is answered on a task of its
/// own, so that a slow upstream holds up only the queries waiting on it.
pub async fn serve_udp<C: Cluster + Send + Sync + 'static>(
    socket: UdpSocket,
    handler: Arc<Handler<C>>,
    shutdown: CancellationToken,
) {
    let socket = Arc::new(socket);
    let mut buf = vec![0u8; 65535];
    loop {
        let (n, peer) = tokio::select! {
            r = socket.recv_from(&mut buf) => match r {
                Ok(r) => r,
                Err(e) => {
                    // An ICMP error from an earlier send to a client shows up here: keep going.
                    tracing::debug!(error = %e, "UDP receive failed");
                    continue;
                }
            },
            _ = shutdown.cancelled() => return,
        };
        let bytes = buf[..n].to_vec();
        let socket = socket.clone();
        let handler = handler.clone();
        tokio::spawn(async move {
            if let Some(reply) = handler.handle(&bytes, Transport::Udp).await
                && let Err(e) = socket.send_to(&reply, peer).await
            {
                tracing::debug!(%peer, error = %e, "UDP send failed");
            }
        });
    }
}

/// Serves TCP connections on `listener` until `shutdown` (RFC 7766: length-prefixed
/// messages, several per connection, answered in order).
pub async fn serve_tcp<C: Cluster + Send + Sync + 'static>(
    listener: TcpListener,
    handler: Arc<Handler<C>>,
    shutdown: CancellationToken,
) {
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(error = %e, "TCP accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => return,
        };
        let handler = handler.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            tokio::select! {
                r = connection(stream, &handler) => if let Err(e) = r {
                    tracing::debug!(%peer, error = %e, "TCP connection ended");
                },
                _ = shutdown.cancelled() => {}
            }
        });
    }
}

async fn connection<C: Cluster + Send + Sync + 'static>(
    mut stream: TcpStream,
    handler: &Handler<C>,
) -> std::io::Result<()> {
    loop {
        let len = match tokio::time::timeout(TCP_IDLE_TIMEOUT, stream.read_u16()).await {
            Ok(Ok(len)) => len,
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Ok(Err(e)) => return Err(e),
            Err(_) => return Ok(()),
        };
        let mut buf = vec![0u8; usize::from(len)];
        tokio::time::timeout(TCP_IDLE_TIMEOUT, stream.read_exact(&mut buf))
            .await
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
        let Some(reply) = handler.handle(&buf, Transport::Tcp).await else {
            return Ok(());
        };
        let len = u16::try_from(reply.len()).map_err(std::io::Error::other)?;
        let mut framed = Vec::with_capacity(reply.len() + 2);
        framed.extend_from_slice(&len.to_be_bytes());
        framed.extend_from_slice(&reply);
        stream.write_all(&framed).await?;
    }
}

/// Binds UDP and TCP on `addr` (port 0: a free port, the same for both when it can).
pub async fn bind(addr: SocketAddr) -> std::io::Result<(UdpSocket, TcpListener)> {
    let udp = UdpSocket::bind(addr).await?;
    let port = udp.local_addr()?.port();
    let tcp = TcpListener::bind(SocketAddr::new(addr.ip(), port)).await?;
    Ok((udp, tcp))
}
