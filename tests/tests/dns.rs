//! The real `skiff-dns` against a real apiserver, asked over UDP and TCP on loopback as a
//! pod's resolver would: A/AAAA of a ClusterIP Service, a headless Service's ready endpoints
//! and their hostnames, SRV for named ports, ExternalName as a CNAME, PTR, NXDOMAIN vs NODATA
//! with the SOA, and names outside the cluster forwarded to a resolver this test runs on
//! loopback (and cached).

use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, SOA};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use serde_json::json;
use skiff_e2e::{ApiServer, Backend, sibling_binary, wait_until};

/// `skiff-dns`, killed on drop (its log printed if the test failed).
struct Dns {
    child: Child,
    log: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Dns {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "--- skiff-dns log ---\n{}",
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
        }
    }
}

fn free_port() -> u16 {
    // A port free for both UDP and TCP.
    loop {
        let udp = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let port = udp.local_addr().expect("addr").port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// A resolver for `example.test.` (A 192.0.2.10, TTL 60; other names NXDOMAIN) on loopback,
/// counting the queries it gets.
fn test_upstream() -> (SocketAddr, Arc<AtomicUsize>) {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind the test upstream");
    let addr = socket.local_addr().expect("addr");
    let count = Arc::new(AtomicUsize::new(0));
    let counted = count.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok((n, peer)) = socket.recv_from(&mut buf) {
            let Ok(request) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            counted.fetch_add(1, Ordering::SeqCst);
            let mut reply = Message::response(request.metadata.id, OpCode::Query);
            reply.metadata.recursion_available = true;
            reply.add_queries(request.queries.iter().cloned());
            let q = &request.queries[0];
            if q.name.to_ascii().eq_ignore_ascii_case("example.test.") {
                if q.query_type == RecordType::A {
                    reply.add_answer(Record::from_rdata(
                        q.name.clone(),
                        60,
                        RData::A(A::new(192, 0, 2, 10)),
                    ));
                }
            } else {
                reply.metadata.response_code = ResponseCode::NXDomain;
                let soa = SOA::new(
                    Name::from_ascii("ns.test.").unwrap(),
                    Name::from_ascii("hostmaster.test.").unwrap(),
                    1,
                    60,
                    60,
                    60,
                    30,
                );
                reply.add_authority(Record::from_rdata(
                    Name::from_ascii("test.").unwrap(),
                    30,
                    RData::SOA(soa),
                ));
            }
            let _ = socket.send_to(&reply.to_vec().unwrap(), peer);
        }
    });
    (addr, count)
}

fn query(name: &str, qtype: RecordType) -> Vec<u8> {
    let mut m = Message::query();
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    let mut edns = Edns::new();
    edns.set_max_payload(1232);
    m.set_edns(edns);
    m.to_vec().unwrap()
}

fn ask_udp(server: SocketAddr, name: &str, qtype: RecordType) -> Message {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    socket.send_to(&query(name, qtype), server).unwrap();
    let mut buf = [0u8; 4096];
    let n = socket
        .recv(&mut buf)
        .unwrap_or_else(|e| panic!("no answer for {name} {qtype}: {e}"));
    let m = Message::from_vec(&buf[..n]).unwrap();
    assert_eq!(m.metadata.message_type, MessageType::Response);
    m
}

fn ask_tcp(server: SocketAddr, name: &str, qtype: RecordType) -> Message {
    use std::io::{Read, Write};
    let mut s = TcpStream::connect(server).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let q = query(name, qtype);
    let mut framed = (q.len() as u16).to_be_bytes().to_vec();
    framed.extend(q);
    s.write_all(&framed).unwrap();
    let mut len = [0u8; 2];
    s.read_exact(&mut len).unwrap();
    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
    s.read_exact(&mut buf).unwrap();
    Message::from_vec(&buf).unwrap()
}

fn data(records: &[Record]) -> Vec<String> {
    let mut v: Vec<String> = records.iter().map(|r| r.data.to_string()).collect();
    v.sort();
    v
}

fn negative(m: &Message, rcode: ResponseCode) {
    assert_eq!(m.metadata.response_code, rcode, "{m:?}");
    assert!(m.answers.is_empty(), "{m:?}");
    assert_eq!(m.authorities.len(), 1, "{m:?}");
    assert_eq!(m.authorities[0].record_type(), RecordType::SOA, "{m:?}");
}

#[test]
fn cluster_dns_answers_services_endpoints_and_forwards_the_rest() {
    let server = ApiServer::start(Backend::Embedded);
    let (upstream, upstream_queries) = test_upstream();
    let port = free_port();
    let health_port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("skiff-dns.log");
    let out = std::fs::File::create(&log).unwrap();
    let child = Command::new(sibling_binary("skiff-dns"))
        .arg("--kubeconfig")
        .arg(server.kubeconfig())
        .args(["--bind-address", "127.0.0.1", "--port", &port.to_string()])
        .args(["--upstream", &upstream.to_string()])
        .args([
            "--healthz-bind-address",
            &format!("127.0.0.1:{health_port}"),
        ])
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .expect("start skiff-dns");
    let _dns = Dns {
        child,
        log,
        _dir: dir,
    };
    let dns: SocketAddr = ([127, 0, 0, 1], port).into();
    let http = reqwest::blocking::Client::new();
    let get = |path: &str| {
        http.get(format!("http://127.0.0.1:{health_port}{path}"))
            .send()
            .map(|r| (r.status().as_u16(), r.text().unwrap_or_default()))
            .unwrap_or((0, String::new()))
    };
    assert!(
        wait_until(Duration::from_secs(30), || get("/readyz").0 == 200),
        "skiff-dns never became ready"
    );
    assert_eq!(get("/healthz").0, 200);

    server.kubectl_create(&[
        json!({"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": "web", "namespace": "default"},
               "spec": {"ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}}),
        json!({"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": "db", "namespace": "default"},
               "spec": {"clusterIP": "None",
                        "ports": [{"name": "pg", "port": 5432, "protocol": "TCP"}]}}),
        json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
               "metadata": {"name": "db-abc", "namespace": "default",
                            "labels": {"kubernetes.io/service-name": "db"}},
               "addressType": "IPv4",
               "ports": [{"name": "pg", "port": 15432, "protocol": "TCP"}],
               "endpoints": [
                   {"addresses": ["10.244.1.5"], "hostname": "db-0",
                    "conditions": {"ready": true}},
                   {"addresses": ["10.244.2.7"], "conditions": {"ready": true}},
                   {"addresses": ["10.244.3.9"], "hostname": "db-2",
                    "conditions": {"ready": false}}]}),
        json!({"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": "ext", "namespace": "default"},
               "spec": {"type": "ExternalName", "externalName": "example.test"}}),
    ]);
    let svc = server.kubectl_json(&["get", "service", "web"]);
    let cluster_ip = svc["spec"]["clusterIP"].as_str().unwrap().to_string();

    // A ClusterIP Service, over UDP and TCP, with any case.
    assert!(
        wait_until(Duration::from_secs(10), || {
            !ask_udp(dns, "web.default.svc.cluster.local.", RecordType::A)
                .answers
                .is_empty()
        }),
        "web never resolved"
    );
    let a = ask_udp(dns, "web.default.svc.cluster.local.", RecordType::A);
    assert!(a.metadata.authoritative);
    assert_eq!(data(&a.answers), [cluster_ip.as_str()]);
    assert_eq!(a.answers[0].ttl, 5);
    let tcp = ask_tcp(dns, "WEB.default.svc.cluster.local.", RecordType::A);
    assert_eq!(data(&tcp.answers), [cluster_ip.as_str()]);
    // NODATA (an IPv4-only Service) and NXDOMAIN, each with the SOA.
    negative(
        &ask_udp(dns, "web.default.svc.cluster.local.", RecordType::AAAA),
        ResponseCode::NoError,
    );
    negative(
        &ask_udp(dns, "nope.default.svc.cluster.local.", RecordType::A),
        ResponseCode::NXDomain,
    );

    // SRV for the named port.
    let srv = ask_udp(
        dns,
        "_http._tcp.web.default.svc.cluster.local.",
        RecordType::SRV,
    );
    assert_eq!(
        data(&srv.answers),
        ["0 100 80 web.default.svc.cluster.local."]
    );
    assert_eq!(data(&srv.additionals), [cluster_ip.as_str()]);

    // The headless Service: ready endpoints, and their hostnames.
    assert!(
        wait_until(Duration::from_secs(10), || {
            ask_udp(dns, "db.default.svc.cluster.local.", RecordType::A)
                .answers
                .len()
                == 2
        }),
        "db never resolved to its ready endpoints"
    );
    let db = ask_udp(dns, "db.default.svc.cluster.local.", RecordType::A);
    assert_eq!(data(&db.answers), ["10.244.1.5", "10.244.2.7"]);
    let db0 = ask_udp(dns, "db-0.db.default.svc.cluster.local.", RecordType::A);
    assert_eq!(data(&db0.answers), ["10.244.1.5"]);
    negative(
        &ask_udp(dns, "db-2.db.default.svc.cluster.local.", RecordType::A),
        ResponseCode::NXDomain,
    );
    let pg = ask_udp(
        dns,
        "_pg._tcp.db.default.svc.cluster.local.",
        RecordType::SRV,
    );
    assert_eq!(
        data(&pg.answers),
        [
            "0 50 15432 10-244-2-7.db.default.svc.cluster.local.",
            "0 50 15432 db-0.db.default.svc.cluster.local."
        ]
    );

    // PTR for the ClusterIP and an endpoint.
    let ip: IpAddr = cluster_ip.parse().unwrap();
    let IpAddr::V4(v4) = ip else {
        panic!("{ip} is not IPv4")
    };
    let o = v4.octets();
    let reverse = format!("{}.{}.{}.{}.in-addr.arpa.", o[3], o[2], o[1], o[0]);
    let ptr = ask_udp(dns, &reverse, RecordType::PTR);
    assert_eq!(data(&ptr.answers), ["web.default.svc.cluster.local."]);
    let ptr = ask_udp(dns, "5.1.244.10.in-addr.arpa.", RecordType::PTR);
    assert_eq!(data(&ptr.answers), ["db-0.db.default.svc.cluster.local."]);

    // ExternalName: the CNAME, and its target resolved upstream.
    let ext = ask_udp(dns, "ext.default.svc.cluster.local.", RecordType::A);
    assert_eq!(ext.metadata.response_code, ResponseCode::NoError);
    assert_eq!(data(&ext.answers), ["192.0.2.10", "example.test."]);

    // Outside the cluster: forwarded, then cached.
    let before = upstream_queries.load(Ordering::SeqCst);
    let fwd = ask_udp(dns, "example.test.", RecordType::A);
    assert_eq!(data(&fwd.answers), ["192.0.2.10"]);
    assert!(!fwd.metadata.authoritative);
    let fwd = ask_tcp(dns, "Example.Test.", RecordType::A);
    assert_eq!(data(&fwd.answers), ["192.0.2.10"]);
    // The ExternalName chase asked first; both of these came from the cache.
    assert_eq!(upstream_queries.load(Ordering::SeqCst), before);
    negative(
        &ask_udp(dns, "gone.test.", RecordType::A),
        ResponseCode::NXDomain,
    );

    // A Service deleted: its name goes.
    server.kubectl_ok(&["delete", "service", "web"]);
    assert!(
        wait_until(Duration::from_secs(10), || {
            ask_udp(dns, "web.default.svc.cluster.local.", RecordType::A)
                .metadata
                .response_code
                == ResponseCode::NXDomain
        }),
        "web still resolves after its deletion"
    );

    let metrics = get("/metrics").1;
    assert!(
        metrics.contains("skiff_dns_requests_total{proto=\"udp\",zone=\"cluster\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("skiff_dns_cache_hits_total 2"),
        "{metrics}"
    );
}
