//! Where skiffadm puts things on a machine (kubeadm's layout under Skiff's names): keys and
//! kubeconfigs in `/etc/skiff`, state in `/var/lib/skiff`, runtime files in `/run/skiff`,
//! supervised components' logs in `/var/log/skiff`. Tests root them elsewhere.

use std::path::{Path, PathBuf};

/// The machine's skiffadm paths, all under `root` (`/` on a real machine).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    root: PathBuf,
}

impl Paths {
    /// The real paths.
    pub fn system() -> Paths {
        Paths::under(Path::new("/"))
    }

    /// The same layout under another root (tests).
    pub fn under(root: &Path) -> Paths {
        Paths {
            root: root.to_path_buf(),
        }
    }

    fn at(&self, path: &str) -> PathBuf {
        self.root.join(path.trim_start_matches('/'))
    }

    /// `/etc/skiff`: kubeconfigs, `.env` files, the encryption config.
    pub fn etc(&self) -> PathBuf {
        self.at("/etc/skiff")
    }

    /// `/etc/skiff/pki`: the CA, the apiserver's certificates, the service account keys.
    pub fn pki(&self) -> PathBuf {
        self.at("/etc/skiff/pki")
    }

    /// `/etc/skiff/<name>.conf` (admin, super-admin, scheduler, controller-manager, kubelet,
    /// proxy, bootstrap-kubelet, bootstrap-proxy).
    pub fn conf(&self, name: &str) -> PathBuf {
        self.etc().join(format!("{name}.conf"))
    }

    /// `/etc/skiff/<unit>.env`: the unit's `SKIFF_ARGS=` line.
    pub fn env_file(&self, unit: &str) -> PathBuf {
        self.etc().join(format!("{unit}.env"))
    }

    /// `/etc/default/<unit>`: the operator's `SKIFF_EXTRA_ARGS=`.
    pub fn default_file(&self, unit: &str) -> PathBuf {
        self.at("/etc/default").join(unit)
    }

    pub fn encryption_config(&self) -> PathBuf {
        self.etc().join("encryption-config.yaml")
    }

    /// `/var/lib/skiff`.
    pub fn var_lib(&self) -> PathBuf {
        self.at("/var/lib/skiff")
    }

    pub fn apiserver_dir(&self) -> PathBuf {
        self.var_lib().join("apiserver")
    }

    /// The kubelet's `--root-dir`.
    pub fn kubelet_dir(&self) -> PathBuf {
        self.var_lib().join("kubelet")
    }

    /// The kubelet's `--cert-dir`.
    pub fn kubelet_cert_dir(&self) -> PathBuf {
        self.kubelet_dir().join("pki")
    }

    /// The proxy's `--cert-dir`.
    pub fn proxy_cert_dir(&self) -> PathBuf {
        self.var_lib().join("proxy").join("pki")
    }

    /// `/run/skiff`.
    pub fn run(&self) -> PathBuf {
        self.at("/run/skiff")
    }

    pub fn supervise_pid(&self) -> PathBuf {
        self.run().join("supervise.pid")
    }

    /// `/var/log/skiff`: supervised components' logs.
    pub fn log_dir(&self) -> PathBuf {
        self.at("/var/log/skiff")
    }

    pub fn log(&self, unit: &str) -> PathBuf {
        self.log_dir().join(format!("{unit}.log"))
    }

    /// systemd is PID 1 on this machine (sd_booted's test).
    pub fn systemd_running(&self) -> bool {
        self.at("/run/systemd/system").is_dir()
    }

    /// Where the package installs the units.
    pub fn unit_file(&self, unit: &str) -> PathBuf {
        self.systemd_unit(&format!("{unit}.service"))
    }

    /// Where the package installs the systemd unit `file` (a `.service`, a `.timer`).
    pub fn systemd_unit(&self, file: &str) -> PathBuf {
        self.at("/lib/systemd/system").join(file)
    }
}
