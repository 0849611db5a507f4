//! Installing Skiff on a machine: the systemd units pass `systemd-analyze verify` against the
//! real binaries, and the .deb that `deploy/package.sh` makes installs, runs, removes and purges
//! as a Debian package does — inside a Debian root made with debootstrap, never on this host.
//!
//! The Debian root (bookworm, minbase, plus the package's Depends) takes a minute or two to
//! bootstrap from deb.debian.org, so it is kept as a tarball in /var/cache/skiff-tests/, named
//! after the suite and the package list, and unpacked afresh by every run.

use std::fs::{self, File};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use skiff_e2e::sibling_binary;

const UNITS: [&str; 5] = [
    "skiff-apiserver",
    "skiff-scheduler",
    "skiff-controller-manager",
    "skiff-kubelet",
    "skiff-proxy",
];
/// The control plane's daily certificate renewal: a oneshot service and its timer.
const RENEW_UNITS: [&str; 2] = ["skiff-certs-renew.service", "skiff-certs-renew.timer"];
const BINARIES: [&str; 7] = [
    "skiff-apiserver",
    "skiff-scheduler",
    "skiff-controller-manager",
    "skiff-kubelet",
    "skiff-proxy",
    "skiffctl",
    "skiffadm",
];

const SUITE: &str = "bookworm";
const CACHE_DIR: &str = "/var/cache/skiff-tests";
/// Where the tests' Debian roots are unpacked (`root-<pid>-*`); a crashed run's are removed.
const ROOTS_DIR: &str = "/var/tmp/skiff-tests";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the workspace")
        .to_path_buf()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("run {cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?} failed:\n{}", text(&out));
    out
}

/// Hard links `from` at `to` (copies across filesystems): `systemd-analyze --root` resolves
/// paths inside the root, so a symlink to the target directory would not do.
fn link_or_copy(from: &Path, to: &Path) {
    if fs::hard_link(from, to).is_err() {
        fs::copy(from, to).unwrap_or_else(|e| panic!("copy {}: {e}", from.display()));
    }
}

/// What every unit promises skiffadm and the operator (the issue's shared contract).
#[test]
fn units_read_skiffadm_flags_then_the_operators() {
    for unit in UNITS {
        let path = repo().join(format!("deploy/systemd/{unit}.service"));
        let body = fs::read_to_string(&path).expect("read the unit");
        let lines: Vec<&str> = body.lines().collect();
        for want in [
            format!("EnvironmentFile=-/etc/skiff/{unit}.env"),
            format!("EnvironmentFile=-/etc/default/{unit}"),
            format!("ExecStart=/usr/bin/{unit} $SKIFF_ARGS $SKIFF_EXTRA_ARGS"),
            "Restart=always".to_string(),
            "WantedBy=multi-user.target".to_string(),
            "Documentation=file:/usr/share/doc/skiff/README.md".to_string(),
        ] {
            assert!(lines.contains(&want.as_str()), "{unit}: no `{want}`");
        }
        let after = lines
            .iter()
            .find_map(|l| l.strip_prefix("After="))
            .unwrap_or_default();
        let wants = lines
            .iter()
            .find_map(|l| l.strip_prefix("Wants="))
            .unwrap_or_default();
        match unit {
            "skiff-kubelet" => {
                assert!(after.contains("docker.service"), "{unit} After={after}");
                assert!(wants.contains("docker.service"), "{unit} Wants={wants}");
            }
            "skiff-scheduler" | "skiff-controller-manager" => {
                assert!(
                    after.contains("skiff-apiserver.service"),
                    "{unit} After={after}"
                )
            }
            "skiff-apiserver" => assert!(lines.contains(&"LimitNOFILE=1048576")),
            _ => {}
        }
        // The operator's file: commented, and an empty SKIFF_EXTRA_ARGS to fill in.
        let default = fs::read_to_string(repo().join(format!("deploy/systemd/default/{unit}")))
            .expect("read the /etc/default file");
        let settings: Vec<&str> = default
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .collect();
        assert_eq!(
            settings,
            ["SKIFF_EXTRA_ARGS="],
            "{unit}'s /etc/default file"
        );
    }
}

/// The renewal runs daily, catches up after downtime, only on a control plane, and restarts
/// only what it renewed.
#[test]
fn the_certificate_renewal_timer_runs_skiffadm_daily_on_a_control_plane() {
    let read = |f: &str| fs::read_to_string(repo().join("deploy/systemd").join(f)).unwrap();
    let service = read("skiff-certs-renew.service");
    let lines: Vec<&str> = service.lines().collect();
    for want in [
        "Type=oneshot",
        "ConditionPathExists=/etc/skiff/pki/ca.key",
        "ExecStart=/usr/bin/skiffadm certs renew all --expiring-within 720h --restart-services",
        "Documentation=file:/usr/share/doc/skiff/README.md",
    ] {
        assert!(
            lines.contains(&want),
            "skiff-certs-renew.service: no `{want}`"
        );
    }
    // Started by its timer only.
    assert!(!service.contains("[Install]"), "{service}");
    let timer = read("skiff-certs-renew.timer");
    let lines: Vec<&str> = timer.lines().collect();
    for want in [
        "OnCalendar=daily",
        "Persistent=true",
        "WantedBy=timers.target",
    ] {
        assert!(
            lines.contains(&want),
            "skiff-certs-renew.timer: no `{want}`"
        );
    }
}

/// `systemd-analyze verify` on the units in a scratch root holding systemd's own units and the
/// built binaries (it checks that ExecStart's program exists), so the host's /usr/bin is not
/// involved. Warnings (an unknown key, say) do not fail `verify`, so its output must be empty.
#[test]
fn units_pass_systemd_analyze_verify() {
    let root = tempfile::tempdir().expect("tempdir");
    let units = root.path().join("lib/systemd/system");
    let bin = root.path().join("usr/bin");
    fs::create_dir_all(&units).unwrap();
    fs::create_dir_all(&bin).unwrap();
    // sysinit.target, network-online.target, ...: what every unit is ordered against.
    run(Command::new("cp")
        .arg("-a")
        .arg("/lib/systemd/system/.")
        .arg(&units));
    for unit in UNITS {
        link_or_copy(&sibling_binary(unit), &bin.join(unit));
        fs::copy(
            repo().join(format!("deploy/systemd/{unit}.service")),
            units.join(format!("{unit}.service")),
        )
        .unwrap();
    }
    let verify = |file: &str| {
        Command::new("systemd-analyze")
            .arg("verify")
            .arg(format!("--root={}", root.path().display()))
            .arg(units.join(file))
            .output()
            .expect("run systemd-analyze (apt-get install systemd)")
    };
    for unit in UNITS {
        let out = verify(&format!("{unit}.service"));
        assert!(
            out.status.success() && text(&out).is_empty(),
            "systemd-analyze verify {unit}.service:\n{}",
            text(&out)
        );
    }
    link_or_copy(&sibling_binary("skiffadm"), &bin.join("skiffadm"));
    for file in RENEW_UNITS {
        fs::copy(repo().join("deploy/systemd").join(file), units.join(file)).unwrap();
    }
    for file in RENEW_UNITS {
        let out = verify(file);
        assert!(
            out.status.success() && text(&out).is_empty(),
            "systemd-analyze verify {file}:\n{}",
            text(&out)
        );
    }

    // And it does look at the binaries: without one, its unit fails.
    fs::remove_file(bin.join("skiff-proxy")).unwrap();
    let out = verify("skiff-proxy.service");
    assert!(!out.status.success(), "verify passed without the binary");
    assert!(
        text(&out).contains("/usr/bin/skiff-proxy"),
        "{}",
        text(&out)
    );
}

/// The first alternative of each of the package's own Depends (not the shared libraries, which
/// a minimal Debian has): what the Debian root needs for `dpkg -i` to find them satisfied.
fn package_depends() -> Vec<String> {
    let control = fs::read_to_string(repo().join("deploy/debian/control")).unwrap();
    let depends = control
        .lines()
        .find_map(|l| l.strip_prefix("Depends:"))
        .expect("a Depends line");
    let mut packages: Vec<String> = depends
        .split(',')
        .map(|d| d.trim())
        .filter(|d| !d.starts_with('@'))
        .map(|d| {
            let first = d.split('|').next().unwrap();
            first.split('(').next().unwrap().trim().to_string()
        })
        .collect();
    packages.sort();
    packages
}

/// Lazily unmounts whatever is mounted under `dir` (debootstrap mounts /proc and /sys in its
/// target and a killed run leaves them), deepest first.
fn unmount_under(dir: &Path) {
    let mounts = fs::read_to_string("/proc/mounts").unwrap_or_default();
    let prefix = format!("{}/", dir.display());
    let mut points: Vec<&str> = mounts
        .lines()
        .filter_map(|l| l.split(' ').nth(1))
        .filter(|p| p.starts_with(&prefix))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in points {
        let _ = Command::new("umount").arg("-l").arg(p).status();
    }
}

/// The cached tarball of a Debian root with `packages`, bootstrapped first if missing. A lock
/// file keeps concurrent runs from bootstrapping twice; what a killed bootstrap left behind
/// (`.build-*`, mounts in it) is cleared under that lock.
fn debian_root_tarball(packages: &[String]) -> PathBuf {
    let cache = Path::new(CACHE_DIR);
    fs::create_dir_all(cache).expect("create the cache directory");
    let tarball = cache.join(format!(
        "debian-{SUITE}-minbase-{}.tar.gz",
        packages.join(",")
    ));
    let lock = File::create(cache.join(".lock")).expect("create the cache lock");
    lock.lock().expect("lock the cache");
    if tarball.exists() {
        return tarball;
    }

    unmount_under(cache);
    for entry in fs::read_dir(cache).unwrap().flatten() {
        if entry.file_name().to_string_lossy().starts_with(".build-") {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
    assert!(
        Command::new("debootstrap")
            .arg("--version")
            .output()
            .is_ok(),
        "debootstrap is missing: apt-get install debootstrap (deploy/install-deps.sh does)"
    );
    let build = tempfile::Builder::new()
        .prefix(".build-")
        .tempdir_in(cache)
        .unwrap();
    let target = build.path().join("root");
    let mirror = std::env::var("SKIFF_DEBIAN_MIRROR")
        .unwrap_or_else(|_| "http://deb.debian.org/debian".to_string());
    let out = Command::new("debootstrap")
        .arg("--variant=minbase")
        .arg(format!("--include={}", packages.join(",")))
        .arg(SUITE)
        .arg(&target)
        .arg(&mirror)
        .output()
        .expect("run debootstrap");
    unmount_under(build.path());
    assert!(
        out.status.success(),
        "debootstrap {SUITE} from {mirror} failed:\n{}",
        text(&out)
    );
    let partial = build.path().join("root.tar.gz");
    run(Command::new("tar")
        .arg("-C")
        .arg(&target)
        .args(["--numeric-owner", "-czf"])
        .arg(&partial)
        .arg("."));
    fs::rename(&partial, &tarball).expect("move the tarball into the cache");
    tarball
}

/// A Debian root unpacked from the cache in `ROOTS_DIR/root-<pid>-*`, removed on drop. Nothing
/// is mounted in it: dpkg and the binaries' `--help` need no /proc.
struct DebianRoot {
    dir: tempfile::TempDir,
}

impl DebianRoot {
    fn unpack(tarball: &Path) -> DebianRoot {
        fs::create_dir_all(ROOTS_DIR).unwrap();
        // Roots of runs that died: their pid is gone.
        for entry in fs::read_dir(ROOTS_DIR).unwrap().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(pid) = name.strip_prefix("root-").and_then(|r| r.split('-').next())
                && !Path::new("/proc").join(pid).exists()
            {
                unmount_under(&entry.path());
                let _ = fs::remove_dir_all(entry.path());
            }
        }
        let dir = tempfile::Builder::new()
            .prefix(&format!("root-{}-", std::process::id()))
            .tempdir_in(ROOTS_DIR)
            .unwrap();
        run(Command::new("tar")
            .arg("-C")
            .arg(dir.path())
            .args(["--numeric-owner", "-xzf"])
            .arg(tarball));
        DebianRoot { dir }
    }

    fn path(&self, inside: &str) -> PathBuf {
        self.dir.path().join(inside.trim_start_matches('/'))
    }

    /// Runs a command in the root (chroot), returning its output whatever the exit status.
    fn chroot(&self, args: &[&str]) -> Output {
        Command::new("chroot")
            .arg(self.dir.path())
            .args(args)
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .output()
            .expect("run chroot")
    }

    fn chroot_ok(&self, args: &[&str]) -> String {
        let out = self.chroot(args);
        assert!(
            out.status.success(),
            "in the Debian root, {args:?} failed:\n{}",
            text(&out)
        );
        text(&out)
    }

    /// Paths (relative to the root) whose name contains `word`, symlinks not followed.
    fn find(&self, word: &str) -> Vec<String> {
        let mut found = Vec::new();
        let mut todo = vec![self.dir.path().to_path_buf()];
        while let Some(dir) = todo.pop() {
            for entry in fs::read_dir(&dir).unwrap().flatten() {
                let path = entry.path();
                if entry.file_name().to_string_lossy().contains(word) {
                    let rel = path.strip_prefix(self.dir.path()).unwrap();
                    found.push(format!("/{}", rel.display()));
                }
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    todo.push(path);
                }
            }
        }
        found.sort();
        found
    }
}

/// Builds the .deb from the test's binaries (fast compression) into `out`.
fn build_package(out: &Path) -> PathBuf {
    let bin_dir = sibling_binary("skiffadm").parent().unwrap().to_path_buf();
    let output = run(Command::new("bash")
        .arg(repo().join("deploy/package.sh"))
        .arg("--bin-dir")
        .arg(&bin_dir)
        .arg("--out-dir")
        .arg(out)
        .arg("--fast"));
    let deb = PathBuf::from(
        String::from_utf8_lossy(&output.stdout)
            .trim()
            .lines()
            .last()
            .unwrap(),
    );
    assert_eq!(
        deb.file_name().unwrap().to_string_lossy(),
        format!("skiff_{}_amd64.deb", env!("CARGO_PKG_VERSION"))
    );
    deb
}

#[test]
fn deb_installs_runs_removes_and_purges_in_a_debian_root() {
    let out = tempfile::tempdir().unwrap();
    let deb = build_package(out.path());
    let root = DebianRoot::unpack(&debian_root_tarball(&package_depends()));

    // The maintainer scripts call systemctl only where systemd runs (/run/systemd/system): the
    // root gets that directory and a systemctl that writes down what it is asked.
    fs::create_dir_all(root.path("/run/systemd/system")).unwrap();
    let systemctl = root.path("/usr/bin/systemctl");
    fs::write(
        &systemctl,
        "#!/bin/sh\necho \"$*\" >>/var/log/systemctl-calls\n",
    )
    .unwrap();
    fs::set_permissions(&systemctl, fs::Permissions::from_mode(0o755)).unwrap();
    let calls = || {
        let log = root.path("/var/log/systemctl-calls");
        let calls = fs::read_to_string(&log).unwrap_or_default();
        let _ = fs::remove_file(&log);
        calls.lines().map(str::to_string).collect::<Vec<_>>()
    };
    let all_units = UNITS.map(|u| format!("{u}.service")).join(" ");

    // dpkg -i with its Depends satisfied by Debian's packages (no --force-depends).
    fs::copy(&deb, root.path("/tmp/skiff.deb")).unwrap();
    root.chroot_ok(&["dpkg", "-i", "/tmp/skiff.deb"]);
    // systemd learns of the units; none is enabled or started (skiffadm does that).
    assert_eq!(calls(), ["daemon-reload"]);
    // Installing again (an upgrade) restarts the running units on the new binaries.
    root.chroot_ok(&["dpkg", "-i", "/tmp/skiff.deb"]);
    assert_eq!(
        calls(),
        [
            "daemon-reload".to_string(),
            format!("try-restart {all_units}")
        ]
    );
    fs::remove_file(root.path("/tmp/skiff.deb")).unwrap();
    assert!(
        root.chroot_ok(&["dpkg", "-s", "skiff"])
            .contains("Status: install ok installed")
    );

    for b in BINARIES {
        let meta = fs::metadata(root.path(&format!("/usr/bin/{b}"))).expect(b);
        assert_eq!(meta.permissions().mode() & 0o777, 0o755, "/usr/bin/{b}");
        let help = root.chroot_ok(&[&format!("/usr/bin/{b}"), "--help"]);
        assert!(help.contains(&format!("Usage: {b}")), "{b} --help:\n{help}");
    }
    assert_eq!(
        root.chroot_ok(&["skiffadm", "--version"]).trim(),
        format!("skiffadm {}", env!("CARGO_PKG_VERSION"))
    );
    let conffiles = root.chroot_ok(&["dpkg-query", "-W", "-f=${Conffiles}", "skiff"]);
    for unit in UNITS {
        let shipped = fs::read(root.path(&format!("/lib/systemd/system/{unit}.service")));
        let source = fs::read(repo().join(format!("deploy/systemd/{unit}.service"))).unwrap();
        assert_eq!(shipped.ok(), Some(source), "{unit}.service as shipped");
        let default = format!("/etc/default/{unit}");
        assert!(root.path(&default).exists(), "{default}");
        assert!(
            conffiles.contains(&default),
            "{default} is no conffile:\n{conffiles}"
        );
    }
    for file in RENEW_UNITS {
        let shipped = fs::read(root.path(&format!("/lib/systemd/system/{file}")));
        let source = fs::read(repo().join("deploy/systemd").join(file)).unwrap();
        assert_eq!(shipped.ok(), Some(source), "{file} as shipped");
    }
    assert!(root.path("/usr/share/doc/skiff/copyright").exists());
    // Installing enables nothing: skiffadm does, on the machines and for the units it runs.
    assert_eq!(
        root.find("skiff")
            .iter()
            .filter(|p| p.contains(".wants/"))
            .count(),
        0
    );

    // What a machine's use leaves: skiffadm's certificates and state, a log, an enabled unit.
    fs::create_dir_all(root.path("/etc/skiff/pki")).unwrap();
    fs::write(root.path("/etc/skiff/pki/ca.crt"), "a CA").unwrap();
    fs::create_dir_all(root.path("/var/lib/skiff")).unwrap();
    fs::create_dir_all(root.path("/var/log/skiff")).unwrap();
    fs::write(root.path("/var/log/skiff/skiff-kubelet.log"), "log").unwrap();
    let wants = root.path("/etc/systemd/system/multi-user.target.wants");
    fs::create_dir_all(&wants).unwrap();
    std::os::unix::fs::symlink(
        "/lib/systemd/system/skiff-kubelet.service",
        wants.join("skiff-kubelet.service"),
    )
    .unwrap();
    let timers = root.path("/etc/systemd/system/timers.target.wants");
    fs::create_dir_all(&timers).unwrap();
    std::os::unix::fs::symlink(
        "/lib/systemd/system/skiff-certs-renew.timer",
        timers.join("skiff-certs-renew.timer"),
    )
    .unwrap();

    // dpkg -r: the programs and units go, the operator's configuration stays (Debian's rule).
    root.chroot_ok(&["dpkg", "-r", "skiff"]);
    assert_eq!(
        calls(),
        [
            // The timer first, so that it cannot start its service meanwhile.
            format!("stop skiff-certs-renew.timer skiff-certs-renew.service {all_units}"),
            "daemon-reload".to_string()
        ]
    );
    assert!(
        root.chroot_ok(&["dpkg", "-s", "skiff"])
            .contains("Status: deinstall ok config-files")
    );
    for b in BINARIES {
        assert!(!root.path(&format!("/usr/bin/{b}")).exists(), "{b} left");
    }
    for unit in UNITS {
        assert!(
            !root
                .path(&format!("/lib/systemd/system/{unit}.service"))
                .exists()
        );
        assert!(root.path(&format!("/etc/default/{unit}")).exists());
    }
    for file in RENEW_UNITS {
        assert!(!root.path(&format!("/lib/systemd/system/{file}")).exists());
    }

    // dpkg -P: nothing of the package is left; the cluster's certificates are kept, and said so.
    let purge = root.chroot(&["dpkg", "-P", "skiff"]);
    assert!(purge.status.success(), "dpkg -P:\n{}", text(&purge));
    assert!(
        text(&purge).contains("kept /etc/skiff") && text(&purge).contains("skiffadm reset"),
        "{}",
        text(&purge)
    );
    assert_eq!(calls(), ["daemon-reload"]);
    assert!(!root.chroot(&["dpkg", "-s", "skiff"]).status.success());
    assert_eq!(root.find("skiff"), ["/etc/skiff"]);
    assert!(root.path("/etc/skiff/pki/ca.crt").exists());
    assert!(root.chroot(&["dpkg", "--audit"]).stdout.is_empty());
}
