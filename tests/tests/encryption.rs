//! Secrets at rest: with `--encryption-provider-config` a Secret's value is nowhere in the
//! embedded store's files nor in etcd, yet `kubectl` reads it; keys rotate as in Kubernetes;
//! the apiserver's files are private from the start; etcd can require client certificates.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use base64::Engine;
use skiff_common::pki;
use skiff_e2e::{ApiServer, Backend, sibling_binary, wait_until};
use skiff_store::testing::{TestEtcd, TestEtcdTls};
use skiff_store::{EtcdStore, EtcdTls, Store};

/// Two AES-256 keys, base64 (bytes 0..32 and 32..64).
const KEY1: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const KEY2: &str = "ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=";

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// An EncryptionConfiguration for Secrets and ConfigMaps with `providers` (YAML list items).
fn encryption_config(providers: &str) -> String {
    format!(
        "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n- resources: [secrets, configmaps]\n  providers:\n{providers}"
    )
}

fn aesgcm(keys: &[(&str, &str)]) -> String {
    let keys: Vec<String> = keys
        .iter()
        .map(|(name, secret)| format!("{{name: {name}, secret: {secret}}}"))
        .collect();
    format!("  - aesgcm:\n      keys: [{}]\n", keys.join(", "))
}

/// A value no test fixture contains by chance.
fn unique(what: &str) -> String {
    format!("{what}-{}", std::process::id())
}

/// `grep -r -F VALUE DIR`: whether any file under `dir` holds `value`.
fn grep_finds(dir: &Path, value: &str) -> bool {
    let status = Command::new("grep")
        .args(["-r", "-q", "-F", "-a", value])
        .arg(dir)
        .status()
        .expect("run grep");
    match status.code() {
        Some(0) => true,
        Some(1) => false,
        _ => panic!("grep -r over {} failed: {status}", dir.display()),
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

#[test]
fn secrets_and_configmaps_are_not_in_the_embedded_store_files_in_plaintext() {
    let conf = tempfile::tempdir().unwrap();
    let path = conf.path().join("encryption.yaml");
    std::fs::write(&path, encryption_config(&aesgcm(&[("key1", KEY1)]))).unwrap();
    let server = ApiServer::start_with_args(
        Backend::Embedded,
        &["--encryption-provider-config", path.to_str().unwrap()],
    );
    let (password, setting) = (unique("hunter2-password"), unique("cm-setting"));
    server.kubectl_ok(&[
        "create",
        "secret",
        "generic",
        "db",
        &format!("--from-literal=password={password}"),
    ]);
    server.kubectl_ok(&[
        "create",
        "configmap",
        "app",
        &format!("--from-literal=setting={setting}"),
    ]);

    let yaml = server.kubectl_ok(&["get", "secret", "db", "-o", "yaml"]);
    assert!(yaml.contains(&b64(&password)), "{yaml}");
    let cm = server.kubectl_ok(&["get", "configmap", "app", "-o", "jsonpath={.data.setting}"]);
    assert_eq!(cm, setting);

    let db = server.data_dir().join("db");
    for value in [password.clone(), b64(&password), setting.clone()] {
        assert!(!grep_finds(&db, &value), "{value} is in {}", db.display());
    }
    assert!(grep_finds(&db, "k8s:enc:aesgcm:v1:key1:"));
}

#[test]
fn keys_rotate_by_listing_the_new_key_first_and_replacing_every_secret() {
    let conf = tempfile::tempdir().unwrap();
    let path = conf.path().join("encryption.yaml");
    let write = |providers: &str| std::fs::write(&path, encryption_config(providers)).unwrap();
    write(&aesgcm(&[("key1", KEY1)]));
    let mut server = ApiServer::start_with_args(
        Backend::Embedded,
        &["--encryption-provider-config", path.to_str().unwrap()],
    );
    let old = unique("written-with-key1");
    server.kubectl_ok(&[
        "create",
        "secret",
        "generic",
        "old",
        &format!("--from-literal=v={old}"),
    ]);
    let read = |server: &ApiServer, name: &str| {
        let v = server.kubectl_ok(&["get", "secret", name, "-o", "jsonpath={.data.v}"]);
        String::from_utf8(base64::engine::general_purpose::STANDARD.decode(v).unwrap()).unwrap()
    };

    // The new key first, the old one still listed: old Secrets read, new ones use key2.
    write(&aesgcm(&[("key2", KEY2), ("key1", KEY1)]));
    server.restart();
    assert_eq!(read(&server, "old"), old);
    let new = unique("written-with-key2");
    server.kubectl_ok(&[
        "create",
        "secret",
        "generic",
        "new",
        &format!("--from-literal=v={new}"),
    ]);

    // Rewrite every Secret with the new key, with the command Kubernetes' documentation gives
    // (kubectl validates the `kind: List` against the OpenAPI v2 document, in protobuf).
    let all = server.kubectl_ok(&["get", "secrets", "-A", "-o", "json"]);
    server.kubectl_stdin_ok(&["replace", "-f", "-"], &all);

    // Only the new key: everything still reads.
    write(&aesgcm(&[("key2", KEY2)]));
    server.restart();
    assert_eq!(read(&server, "old"), old);
    assert_eq!(read(&server, "new"), new);
}

#[test]
fn the_apiserver_files_are_private_from_creation() {
    let server = ApiServer::start(Backend::Embedded);
    let data = server.data_dir();
    let pki_dir = data.join("pki");
    for (path, want) in [
        (data.clone(), 0o700),
        (data.join("db"), 0o700),
        (data.join("db/state.redb"), 0o600),
        (pki_dir.clone(), 0o700),
        (pki_dir.join("ca.key"), 0o600),
        (pki_dir.join("apiserver.key"), 0o600),
        (pki_dir.join("admin.key"), 0o600),
        (pki_dir.join("sa.key"), 0o600),
        (server.kubeconfig(), 0o600),
    ] {
        assert_eq!(mode(&path), want, "{}", path.display());
    }
}

/// A CA, etcd's serving certificate and the apiserver's client certificate, in `dir`.
fn etcd_pki(dir: &Path) -> (TestEtcdTls, [PathBuf; 3]) {
    let ca = pki::new_ca_named("test-etcd-ca").unwrap();
    let server = pki::issue(&ca, "etcd", &[], &["127.0.0.1".into(), "localhost".into()]).unwrap();
    let client = pki::issue(&ca, "kube-apiserver-etcd-client", &[], &[]).unwrap();
    let file = |name: &str, pem: &str| {
        let path = dir.join(name);
        pki::write(&path, pem, name.ends_with(".key")).unwrap();
        path
    };
    let tls = TestEtcdTls {
        ca: file("ca.crt", &ca.cert_pem),
        cert: file("server.crt", &server.cert_pem),
        key: file("server.key", &server.key_pem),
    };
    let client_files = [
        tls.ca.clone(),
        file("client.crt", &client.cert_pem),
        file("client.key", &client.key_pem),
    ];
    (tls, client_files)
}

#[test]
fn etcd_with_client_certificates_holds_only_ciphertext() {
    let dir = tempfile::tempdir().unwrap();
    let (tls, [ca, cert, key]) = etcd_pki(dir.path());
    let etcd = TestEtcd::start_tls(&tls);
    let endpoint = etcd.endpoint.clone();
    assert!(endpoint.starts_with("https://"), "{endpoint}");
    let config = dir.path().join("encryption.yaml");
    std::fs::write(&config, encryption_config(&aesgcm(&[("key1", KEY1)]))).unwrap();
    let server = ApiServer::start_on_etcd(
        etcd,
        &[
            "--etcd-cafile",
            ca.to_str().unwrap(),
            "--etcd-certfile",
            cert.to_str().unwrap(),
            "--etcd-keyfile",
            key.to_str().unwrap(),
            "--encryption-provider-config",
            config.to_str().unwrap(),
        ],
    );
    let password = unique("etcd-password");
    server.kubectl_ok(&[
        "create",
        "secret",
        "generic",
        "db",
        &format!("--from-literal=password={password}"),
    ]);
    let yaml = server.kubectl_ok(&["get", "secret", "db", "-o", "yaml"]);
    assert!(yaml.contains(&b64(&password)), "{yaml}");

    // What `etcdctl get /registry/secrets/default/db` shows: the stored bytes.
    let read = |pem: &Path| std::fs::read_to_string(pem).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let raw = runtime.block_on(async {
        let with_cert = EtcdTls {
            ca_pem: Some(read(&ca)),
            client_pem: Some((read(&cert), read(&key))),
        };
        let store = EtcdStore::connect_with_tls(std::slice::from_ref(&endpoint), Some(with_cert))
            .await
            .expect("connect with the client certificate");
        // Without a client certificate etcd lets no one in.
        let without = EtcdTls {
            ca_pem: Some(read(&ca)),
            client_pem: None,
        };
        assert!(
            EtcdStore::connect_with_tls(std::slice::from_ref(&endpoint), Some(without))
                .await
                .is_err()
        );
        store
            .get("/registry/secrets/default/db")
            .await
            .unwrap()
            .expect("the secret is in etcd")
            .value
    });
    assert!(raw.starts_with(b"k8s:enc:aesgcm:v1:key1:"));
    for value in [password.clone(), b64(&password)] {
        assert!(
            !raw.windows(value.len()).any(|w| w == value.as_bytes()),
            "{value} is in etcd"
        );
    }
}

#[test]
fn a_bad_encryption_config_stops_the_apiserver_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("encryption.yaml");
    // 3 bytes: no AES key size.
    std::fs::write(&config, encryption_config(&aesgcm(&[("key1", "AAAA")]))).unwrap();
    let log = std::fs::File::create(dir.path().join("log")).unwrap();
    let mut child = Command::new(sibling_binary("skiff-apiserver"))
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args(["--bind-address", "127.0.0.1", "--secure-port", "0"])
        .arg("--encryption-provider-config")
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let mut status = None;
    let exited = wait_until(Duration::from_secs(30), || {
        status = child.try_wait().unwrap();
        status.is_some()
    });
    if !exited {
        let _ = child.kill();
        let _ = child.wait();
        panic!("the apiserver kept running with a bad encryption configuration");
    }
    assert!(!status.unwrap().success());
    let out = std::fs::read_to_string(dir.path().join("log")).unwrap();
    assert!(
        out.contains("resources[0].providers[0].aesgcm.keys[0].secret: Invalid value: \"REDACTED\": secret is not of the expected length, got 3, expected one of [16 24 32]"),
        "{out}"
    );
}
