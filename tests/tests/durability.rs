//! No acknowledged write is lost: `kill -9` the apiserver in the middle of a stream of creates,
//! restart it on the same data, and every create that got 201 is there.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use skiff_e2e::fixtures::config_map;
use skiff_e2e::{ApiServer, Backend, wait_until};

skiff_e2e::for_each_backend!(acknowledged_creates_survive_kill_9);

const CONFIGMAPS: &str = "/api/v1/namespaces/default/configmaps";
/// Concurrent writers, so that several creates are in flight when the server dies.
const WRITERS: usize = 3;
/// Kill the server once this many creates were acknowledged.
const KILL_AFTER: usize = 100;

fn acknowledged_creates_survive_kill_9(backend: Backend) {
    let mut server = ApiServer::start(backend);
    let http = server.http();
    let acknowledged = Arc::new(Mutex::new(Vec::<String>::new()));
    let unexpected = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));

    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (http, acknowledged, unexpected, stop) = (
                http.clone(),
                acknowledged.clone(),
                unexpected.clone(),
                stop.clone(),
            );
            std::thread::spawn(move || {
                for i in 0.. {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let name = format!("durable-{w}-{i:05}");
                    let body = config_map(&name)
                        .label("e2e", "durability")
                        .data("n", &i.to_string())
                        .build();
                    match http.try_send(
                        "POST",
                        CONFIGMAPS,
                        Some("application/json"),
                        body.to_string().into_bytes(),
                    ) {
                        Ok(reply) if reply.status == 201 => acknowledged.lock().unwrap().push(name),
                        Ok(reply) => unexpected
                            .lock()
                            .unwrap()
                            .push(format!("{name}: HTTP {}: {}", reply.status, reply.body)),
                        // The server is gone (killed): this writer's stream ends.
                        Err(_) => break,
                    }
                }
            })
        })
        .collect();

    let enough = wait_until(Duration::from_secs(120), || {
        acknowledged.lock().unwrap().len() >= KILL_AFTER
    });
    // Kill while the writers are still sending: some creates are in flight right now.
    server.kill9();
    stop.store(true, Ordering::Relaxed);
    for writer in writers {
        writer.join().expect("a writer thread panicked");
    }
    assert!(
        enough,
        "only {} creates were acknowledged within 120 s",
        acknowledged.lock().unwrap().len()
    );
    let unexpected = unexpected.lock().unwrap();
    assert!(
        unexpected.is_empty(),
        "creates that got neither 201 nor a dropped connection:\n{}",
        unexpected.join("\n")
    );

    eprintln!(
        "{} creates acknowledged before kill -9",
        acknowledged.lock().unwrap().len()
    );
    server.restart();
    let http = server.http();
    let list = http.get(&format!("{CONFIGMAPS}?labelSelector=e2e%3Ddurability"));
    assert_eq!(list.status, 200, "{}", list.body);
    let list = list.json();
    let stored: std::collections::HashSet<String> = list["items"]
        .as_array()
        .expect("a list has items")
        .iter()
        .filter_map(|cm| cm["metadata"]["name"].as_str().map(str::to_owned))
        .collect();
    let acknowledged = acknowledged.lock().unwrap();
    eprintln!("{} stored after restart", stored.len());
    let lost: Vec<&String> = acknowledged
        .iter()
        .filter(|n| !stored.contains(*n))
        .collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged creates are gone after kill -9 and restart: {lost:?}",
        lost.len(),
        acknowledged.len()
    );

    // The restarted server goes on where it stopped: new writes get newer resourceVersions.
    let newest_before: u64 = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|cm| cm["metadata"]["resourceVersion"].as_str()?.parse().ok())
        .max()
        .expect("resourceVersions are numbers");
    let after = http.post_json(CONFIGMAPS, &config_map("after-restart").build());
    assert_eq!(after.status, 201, "{}", after.body);
    let rv: u64 = after.json()["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|rv| rv.parse().ok())
        .expect("a numeric resourceVersion");
    assert!(
        rv > newest_before,
        "resourceVersion went backwards after restart: {rv} <= {newest_before}"
    );
}
