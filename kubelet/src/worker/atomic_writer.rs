//! Kubernetes' atomic writer (`pkg/volume/util/atomic_writer.go`), the one way the kubelet
//! writes configMap, secret, downwardAPI and projected volumes.
//!
//! A volume's files live in a hidden timestamped folder (`..2026_12_07_17_45_01.123456789`);
//! `..data` is a symlink to it, and each user-visible top-level name is a symlink into
//! `..data` (`key -> ..data/key`, `conf -> ..data/conf`). An update writes a new folder and
//! switches `..data` with one `rename` of a fresh `..data_tmp` link, so readers see the old
//! version or the new one, never a mix.
//!
//! The writer runs as root on the host, in a folder a container may see (read-only) and, in a
//! broken or hostile setup, may have altered: so it never writes, chmods or deletes through a
//! symlink. Files are only ever created inside the fresh folder, with `O_CREAT|O_EXCL|
//! O_NOFOLLOW`; an existing name that is not what the writer would have put there (a planted
//! symlink, a file, a folder) is removed as an entry and replaced, not followed.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};

/// The link to the current data folder, and the link that replaces it.
const DATA_DIR: &str = "..data";
const NEW_DATA_DIR: &str = "..data_tmp";

/// Permission bits a volume file may have: setuid, setgid and sticky never (the apiserver
/// refuses modes above 0777; objects stored before it did are trimmed here).
const MODE_MASK: u32 = 0o777;

/// One file of a volume: its content and permission bits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct FileProjection {
    pub data: Vec<u8>,
    pub mode: u32,
}

/// A volume's files, by path relative to the volume (`key`, `conf/mode.txt`).
pub(super) type Payload = BTreeMap<String, FileProjection>;

#[derive(Debug, thiserror::Error)]
pub(super) enum WriteError {
    /// A path that is absolute, climbs with `..`, or names the writer's own `..` entries.
    #[error("invalid path {0:?} in a volume item")]
    InvalidPath(String),
    #[error("writing volume files in {}: {source}", dir.display())]
    Io { dir: PathBuf, source: io::Error },
}

/// Writes `payload` into `dir` (which exists) in the atomic layout. Returns whether anything
/// was written: nothing is, when the current data folder holds exactly the payload and every
/// user-visible link is in place.
pub(super) fn write(dir: &Path, payload: &Payload) -> Result<bool, WriteError> {
    for path in payload.keys() {
        if !valid_path(path) {
            return Err(WriteError::InvalidPath(path.clone()));
        }
    }
    write_valid(dir, payload).map_err(|source| WriteError::Io {
        dir: dir.to_path_buf(),
        source,
    })
}

/// Kubernetes' rule for a payload path: relative, no `..` element, not starting with `..`
/// (those names are the writer's), and no empty element.
fn valid_path(path: &str) -> bool {
    !path.is_empty()
        && !path.starts_with('/')
        && !path.starts_with("..")
        && path.split('/').all(|p| !p.is_empty() && p != "..")
}

/// The top-level names of a payload: the user-visible symlinks.
fn top_level(payload: &Payload) -> BTreeSet<&str> {
    payload
        .keys()
        .map(|p| p.split('/').next().unwrap_or(p))
        .collect()
}

fn write_valid(dir: &Path, payload: &Payload) -> io::Result<bool> {
    let top = top_level(payload);
    let current = current_data_dir(dir);
    if let Some(current) = &current
        && holds_exactly(&dir.join(current), payload)?
        && visible_links_in_place(dir, &top)
    {
        return Ok(false);
    }

    let ts_name = new_timestamp_dir(dir)?;
    let ts = dir.join(&ts_name);
    if let Err(e) = write_files(&ts, payload) {
        let _ = fs::remove_dir_all(&ts);
        return Err(e);
    }

    // Switch `..data` with a rename: atomic, and it replaces the entry itself, so whatever
    // `..data` was (even a symlink out of the volume) is not followed. A real folder in its
    // place would make the rename fail, so it goes first.
    let data_link = dir.join(DATA_DIR);
    let new_link = dir.join(NEW_DATA_DIR);
    remove_entry(&new_link)?;
    if fs::symlink_metadata(&data_link).is_ok_and(|m| m.is_dir()) {
        fs::remove_dir_all(&data_link)?;
    }
    let switched = symlink(&ts_name, &new_link).and_then(|()| fs::rename(&new_link, &data_link));
    if let Err(e) = switched {
        let _ = remove_entry(&new_link);
        let _ = fs::remove_dir_all(&ts);
        return Err(e);
    }

    // The user-visible names: each a symlink into `..data`, replaced when it is anything else.
    for name in &top {
        let visible = dir.join(name);
        let want = Path::new(DATA_DIR).join(name);
        if fs::read_link(&visible).is_ok_and(|t| t == want) {
            continue;
        }
        remove_entry(&visible)?;
        symlink(&want, &visible)?;
    }

    // Links of names the payload no longer has, and every data folder but the new one (the
    // old one, and leftovers of an interrupted write). Anything else is not the writer's (a
    // subPath folder the kubelet made, say) and stays.
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let stale = if name.starts_with("..") {
            name != DATA_DIR && name != ts_name && is_writer_name(&name)
        } else {
            !top.contains(name.as_ref()) && entry.file_type()?.is_symlink()
        };
        if stale {
            remove_entry(&entry.path())?;
        }
    }
    Ok(true)
}

/// Whether `name` is one the writer makes: `..data`, `..data_tmp`, or a timestamped folder
/// (`..` and a digit).
fn is_writer_name(name: &str) -> bool {
    name == DATA_DIR
        || name == NEW_DATA_DIR
        || name
            .strip_prefix("..")
            .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()))
}

/// The data folder `..data` names, if it is one: a link to a sibling `..` folder that is a
/// real folder. Anything else (a link out of the volume, a link to a link) is no data, and
/// gets replaced by the next write.
fn current_data_dir(dir: &Path) -> Option<String> {
    let target = fs::read_link(dir.join(DATA_DIR)).ok()?;
    let name = target.to_str()?;
    let sibling = name.starts_with("..")
        && !name.contains('/')
        && name != DATA_DIR
        && name != NEW_DATA_DIR
        && name != "..";
    let is_dir = fs::symlink_metadata(dir.join(name)).is_ok_and(|m| m.is_dir());
    (sibling && is_dir).then(|| name.to_string())
}

/// Whether the folder `root` holds exactly `payload`: the same files, with the same content
/// and mode, no others, and no symlinks anywhere.
fn holds_exactly(root: &Path, payload: &Payload) -> io::Result<bool> {
    let mut files = BTreeMap::new();
    if !list_files(root, "", &mut files)? {
        return Ok(false);
    }
    if files.len() != payload.len() || !payload.keys().all(|p| files.contains_key(p)) {
        return Ok(false);
    }
    for (path, file) in payload {
        let Ok(mut f) = open_no_follow(&root.join(path)) else {
            return Ok(false);
        };
        let meta = f.metadata()?;
        if !meta.is_file() || meta.permissions().mode() & 0o7777 != file.mode & MODE_MASK {
            return Ok(false);
        }
        let mut data = Vec::new();
        f.read_to_end(&mut data)?;
        if data != file.data {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Collects the regular files under `root`/`prefix` (relative paths) into `out`, without
/// following symlinks; false if it meets anything but files and folders.
fn list_files(root: &Path, prefix: &str, out: &mut BTreeMap<String, ()>) -> io::Result<bool> {
    for entry in fs::read_dir(root.join(prefix))? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        // `DirEntry::file_type` does not follow symlinks.
        let kind = entry.file_type()?;
        if kind.is_dir() {
            if !list_files(root, &path, out)? {
                return Ok(false);
            }
        } else if kind.is_file() {
            out.insert(path, ());
        } else {
            return Ok(false);
        }
    }
    Ok(true)
}

fn visible_links_in_place(dir: &Path, top: &BTreeSet<&str>) -> bool {
    top.iter().all(|name| {
        fs::read_link(dir.join(name)).is_ok_and(|t| t == Path::new(DATA_DIR).join(name))
    })
}

/// Writes every file of `payload` into the fresh folder `root`, creating subfolders, each
/// file with its mode whatever the umask.
fn write_files(root: &Path, payload: &Payload) -> io::Result<()> {
    for (path, file) in payload {
        let mut parent = root.to_path_buf();
        let mut parts: Vec<&str> = path.split('/').collect();
        let name = parts.pop().unwrap_or(path);
        for part in parts {
            parent.push(part);
            match fs::create_dir(&parent) {
                Ok(()) => set_dir_mode(&parent)?,
                // Made for an earlier file of this payload; never a symlink, as nothing but
                // this function writes in the fresh folder.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    if !fs::symlink_metadata(&parent)?.is_dir() {
                        return Err(io::Error::new(
                            io::ErrorKind::AlreadyExists,
                            format!("{path}: a file is in the way of a folder"),
                        ));
                    }
                }
                Err(e) => return Err(e),
            }
        }
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(file.mode & MODE_MASK)
            .custom_flags(libc::O_NOFOLLOW)
            .open(parent.join(name))?;
        f.write_all(&file.data)?;
        // On the open file: the umask trimmed the mode given at creation.
        f.set_permissions(fs::Permissions::from_mode(file.mode & MODE_MASK))?;
    }
    Ok(())
}

fn open_no_follow(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}

/// Folders are searchable by any container user, whatever the kubelet's umask; set through
/// an open handle (`fchmod`), so a symlink would not be followed.
fn set_dir_mode(path: &Path) -> io::Result<()> {
    let f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_DIRECTORY)
        .open(path)?;
    f.set_permissions(fs::Permissions::from_mode(0o755))
}

/// Removes the entry at `path` itself, whatever it is: a symlink or file is unlinked (never
/// followed), a folder removed with its content (`remove_dir_all` does not follow symlinks).
fn remove_entry(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Creates `..<UTC time>.<nanoseconds>` under `dir` (Kubernetes' timestamped data folder) and
/// returns its name.
fn new_timestamp_dir(dir: &Path) -> io::Result<String> {
    let now = jiff::Timestamp::now();
    let stamp = format!(
        "{}.{:09}",
        now.strftime("..%Y_%m_%d_%H_%M_%S"),
        now.subsec_nanosecond()
    );
    for attempt in 0u32..100 {
        let name = match attempt {
            0 => stamp.clone(),
            n => format!("{stamp}{n}"),
        };
        let path = dir.join(&name);
        match fs::create_dir(&path) {
            Ok(()) => {
                set_dir_mode(&path)?;
                return Ok(name);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        "no free name for a timestamped data folder",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(files: &[(&str, &str, u32)]) -> Payload {
        files
            .iter()
            .map(|(p, d, m)| {
                (
                    p.to_string(),
                    FileProjection {
                        data: d.as_bytes().to_vec(),
                        mode: *m,
                    },
                )
            })
            .collect()
    }

    fn link(path: &Path) -> String {
        fs::read_link(path)
            .unwrap_or_else(|e| panic!("{path:?}: {e}"))
            .display()
            .to_string()
    }

    fn read(path: &Path) -> (String, u32) {
        let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
        (
            text,
            fs::metadata(path).unwrap().permissions().mode() & 0o7777,
        )
    }

    /// Every entry of `dir`, hidden ones included, sorted.
    fn entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn the_layout_is_a_timestamped_folder_behind_data_and_visible_links() {
        let dir = tempfile::tempdir().unwrap();
        let written = write(
            dir.path(),
            &payload(&[("key", "v1", 0o644), ("conf/mode", "fast", 0o400)]),
        )
        .unwrap();
        assert!(written);
        let data = link(&dir.path().join("..data"));
        // `..2026_12_07_17_45_01.123456789`
        assert_eq!(
            data.len(),
            "..2026_12_07_17_45_01.123456789".len(),
            "{data}"
        );
        assert!(
            data.starts_with("..2") && data.as_bytes()[21] == b'.',
            "{data}"
        );
        assert_eq!(
            entries(dir.path()),
            [data.as_str(), "..data", "conf", "key"]
        );
        assert_eq!(link(&dir.path().join("key")), "..data/key");
        assert_eq!(link(&dir.path().join("conf")), "..data/conf");
        assert_eq!(read(&dir.path().join("key")), ("v1".into(), 0o644));
        assert_eq!(read(&dir.path().join("conf/mode")), ("fast".into(), 0o400));
        let ts_mode = fs::metadata(dir.path().join(&data))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(ts_mode & 0o777, 0o755);
    }

    #[test]
    fn an_update_swaps_data_and_removes_the_old_folder_and_gone_names() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            &payload(&[("key", "v1", 0o644), ("old", "x", 0o644)]),
        )
        .unwrap();
        let first = link(&dir.path().join("..data"));

        // The same payload again: nothing is written.
        let same = write(
            dir.path(),
            &payload(&[("key", "v1", 0o644), ("old", "x", 0o644)]),
        );
        assert!(!same.unwrap());
        assert_eq!(link(&dir.path().join("..data")), first);

        assert!(write(dir.path(), &payload(&[("key", "v2", 0o600)])).unwrap());
        let second = link(&dir.path().join("..data"));
        assert_ne!(second, first);
        assert_eq!(read(&dir.path().join("key")), ("v2".into(), 0o600));
        assert_eq!(entries(dir.path()), [second.as_str(), "..data", "key"]);

        // What the writer did not make stays (a subPath folder), leftovers of its own go.
        fs::create_dir(dir.path().join("made-for-a-sub-path")).unwrap();
        fs::create_dir(dir.path().join("..2020_01_01_00_00_00.000000001")).unwrap();
        assert!(write(dir.path(), &payload(&[("key", "v3", 0o600)])).unwrap());
        let third = link(&dir.path().join("..data"));
        assert_eq!(
            entries(dir.path()),
            [third.as_str(), "..data", "key", "made-for-a-sub-path"]
        );

        // A mode change alone is a change.
        assert!(write(dir.path(), &payload(&[("key", "v2", 0o644)])).unwrap());
        assert_eq!(read(&dir.path().join("key")).1, 0o644);
    }

    #[test]
    fn planted_symlinks_are_replaced_never_followed() {
        let outside = tempfile::tempdir().unwrap();
        let sentinel = outside.path().join("sentinel");
        fs::write(&sentinel, "host secret").unwrap();
        fs::set_permissions(&sentinel, fs::Permissions::from_mode(0o600)).unwrap();
        let outside_folder = outside.path().join("folder");
        fs::create_dir(&outside_folder).unwrap();
        fs::write(outside_folder.join("key"), "keep me").unwrap();

        let dir = tempfile::tempdir().unwrap();
        let v = dir.path();
        write(v, &payload(&[("key", "v1", 0o644)])).unwrap();
        let first = link(&v.join("..data"));

        // The visible name replaced by a link to a host file: the next write (same payload)
        // replaces the link, and the host file keeps its content and mode.
        fs::remove_file(v.join("key")).unwrap();
        symlink(&sentinel, v.join("key")).unwrap();
        assert!(write(v, &payload(&[("key", "v1", 0o644)])).unwrap());
        assert_eq!(link(&v.join("key")), "..data/key");
        assert_eq!(read(&v.join("key")), ("v1".into(), 0o644));

        // `..data` pointed at a host folder: not read as the old data, not removed, not
        // written into; `..data` is a link to a fresh folder again.
        fs::remove_file(v.join("..data")).unwrap();
        symlink(&outside_folder, v.join("..data")).unwrap();
        assert!(write(v, &payload(&[("key", "v2", 0o644)])).unwrap());
        let data = link(&v.join("..data"));
        assert!(data.starts_with("..2") && data != first, "{data}");
        assert_eq!(read(&v.join("key")).0, "v2");
        assert_eq!(
            fs::read_to_string(outside_folder.join("key")).unwrap(),
            "keep me"
        );

        // A file of the data folder replaced by a link to the host file: the data no longer
        // matches, a new folder is written, the link goes with the old folder.
        let inside = v.join(&data).join("key");
        fs::remove_file(&inside).unwrap();
        symlink(&sentinel, &inside).unwrap();
        assert!(write(v, &payload(&[("key", "v2", 0o644)])).unwrap());
        assert_eq!(read(&v.join("key")).0, "v2");
        assert!(
            fs::symlink_metadata(&inside).is_err(),
            "the old folder is gone"
        );

        assert_eq!(read(&sentinel), ("host secret".into(), 0o600));
        assert_eq!(entries(outside.path()), ["folder", "sentinel"]);
    }

    #[test]
    fn paths_that_leave_the_volume_or_take_the_writers_names_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        for bad in [
            "../escape",
            "/abs",
            "a/../../b",
            "..data",
            "..2026",
            "a//b",
            "",
        ] {
            let err = write(dir.path(), &payload(&[(bad, "x", 0o644)])).unwrap_err();
            assert_eq!(
                err.to_string(),
                format!("invalid path {bad:?} in a volume item")
            );
        }
        assert!(entries(dir.path()).is_empty(), "nothing written");
    }
}
