//! What changed since the last run: a listing (a walk) compared with the
//! stat keys a state holds, without reading any file. Each file costs one
//! `stat`; only files that are new or whose key differs come back (with
//! their new key), and the known paths the listing did not meet (gone).
//! Unchanged files are only counted, so a re-run over an unchanged archive
//! makes no object per file on the Python side.

use std::collections::HashMap;
use std::ffi::{CString, OsStr, OsString};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use std::os::unix::fs::MetadataExt;
use xxhash_rust::xxh3::Xxh3DefaultBuilder;

use super::{Entry, Found};
use crate::outcome;

/// What tells a file changed: its identity and its change times.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StatKey {
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    pub mtime_ns: i64,
    pub ctime_ns: i64,
}

impl StatKey {
    pub fn of(m: &std::fs::Metadata) -> StatKey {
        StatKey {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime_ns: m.mtime() * 1_000_000_000 + m.mtime_nsec(),
            ctime_ns: m.ctime() * 1_000_000_000 + m.ctime_nsec(),
        }
    }

    /// Whether a file with key `self` is the file stored with `old`.
    /// `moved`: an archive moved or restored (new device, inode and ctime)
    /// is the same when size and mtime are.
    pub fn same(&self, old: &StatKey, moved: bool) -> bool {
        if moved {
            self.size == old.size && self.mtime_ns == old.mtime_ns
        } else {
            self == old
        }
    }
}

/// A file to read: new, or changed since it was stored.
#[derive(Debug)]
pub struct Changed {
    pub entry: Entry,
    pub key: StatKey,
    /// The state held a row for it.
    pub known: bool,
}

#[derive(Debug, Default)]
pub struct Scan {
    pub changed: Vec<Changed>,
    /// Entries the listing left out or could not look at (skipped, failed):
    /// never read, listed every run with their reason.
    pub others: Vec<Entry>,
    /// Displays of known files the listing did not meet.
    pub vanished: Vec<OsString>,
    pub unchanged: usize,
}

/// Stats files relative to their directory (kept open while the walk
/// is in it): the kernel looks up one name instead of the whole path, a
/// good part of an unchanged run's time.
#[derive(Default)]
struct Dirs {
    current: Option<(PathBuf, OwnedFd)>,
}

impl Dirs {
    /// The key of `path`, following a link as `std::fs::metadata` does.
    fn stat(&mut self, path: &Path) -> std::io::Result<StatKey> {
        let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
            return std::fs::metadata(path).map(|m| StatKey::of(&m));
        };
        if self.current.as_ref().map(|(p, _)| p.as_path()) != Some(parent) {
            self.current = None;
            let dir = CString::new(parent.as_os_str().as_bytes())?;
            // O_PATH: no read permission needed, nothing read
            let fd = unsafe {
                libc::open(
                    dir.as_ptr(),
                    libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
                )
            };
            if fd < 0 {
                return std::fs::metadata(path).map(|m| StatKey::of(&m));
            }
            // SAFETY: a descriptor just opened, owned by nothing else
            self.current = Some((parent.to_path_buf(), unsafe { OwnedFd::from_raw_fd(fd) }));
        }
        let fd = self
            .current
            .as_ref()
            .map(|(_, fd)| fd.as_raw_fd())
            .unwrap_or(libc::AT_FDCWD);
        let name = CString::new(name.as_bytes())?;
        let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
        // SAFETY: a valid descriptor, a NUL-terminated name, room for the result
        if unsafe { libc::fstatat(fd, name.as_ptr(), st.as_mut_ptr(), 0) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: fstatat filled it
        let st = unsafe { st.assume_init() };
        Ok(StatKey {
            dev: st.st_dev,
            ino: st.st_ino,
            size: st.st_size as u64,
            mtime_ns: st.st_mtime * 1_000_000_000 + st.st_mtime_nsec,
            ctime_ns: st.st_ctime * 1_000_000_000 + st.st_ctime_nsec,
        })
    }
}

/// Compare `listing` with `known` (display → key of the last run).
pub fn scan(listing: impl Iterator<Item = Entry>, mut known: Known<'_>, moved: bool) -> Scan {
    let mut out = Scan::default();
    let mut dirs = Dirs::default();
    for entry in listing {
        // A known file now left out or unreadable is gone from the index
        // (and listed with its reason): it stays in `known`, so vanished.
        if !matches!(entry.found, Found::File) {
            out.others.push(entry);
            continue;
        }
        // The walk has the type from the directory; the key needs a stat
        // (following a link the walk followed).
        let key = match dirs.stat(&entry.path) {
            Ok(key) => key,
            Err(e) => {
                let found = Found::Fail(outcome::UNREADABLE.name, e.to_string());
                out.others.push(Entry { found, ..entry });
                continue;
            }
        };
        match known.remove(entry.display.as_bytes()) {
            Some(old) if key.same(&old, moved) => out.unchanged += 1,
            Some(_) => out.changed.push(Changed {
                entry,
                key,
                known: true,
            }),
            None => out.changed.push(Changed {
                entry,
                key,
                known: false,
            }),
        }
    }
    out.vanished = known
        .into_keys()
        .map(|k| OsStr::from_bytes(k).to_os_string())
        .collect();
    out.vanished.sort();
    out
}

/// The stat keys of the last run, packed for the state (`scan_keys`), in
/// byte order of the display paths, each path front-coded: per file, how
/// many leading bytes it shares with the path before (u32 LE), the
/// length of the rest (u32 LE), the rest, then dev, ino, size, mtime_ns,
/// ctime_ns (8 bytes LE each). A run that changed nothing hands the
/// stored blob straight to `scan`, without a Python object per file.
pub struct Packed {
    /// every path, one after the other
    paths: Vec<u8>,
    /// (start, end) in `paths`, and the key, per file
    keys: Vec<(usize, usize, StatKey)>,
}

/// display → key, the paths borrowed from a `Packed` (no allocation per
/// file), hashed with xxh3 (the keys are ours, not an attacker's choice).
pub type Known<'a> = HashMap<&'a [u8], StatKey, Xxh3DefaultBuilder>;

const KEY_BYTES: usize = 40;

/// No display path is longer (Linux's PATH_MAX is 4096).
const MAX_PATH: usize = 1 << 16;

/// The callers check the lengths first (see `Packed::new`): these only
/// read what is there.
fn u32_at(b: &[u8]) -> usize {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    u32::from_le_bytes(a) as usize
}

fn u64_at(b: &[u8], i: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[i * 8..i * 8 + 8]);
    u64::from_le_bytes(a)
}

impl Packed {
    /// The keys of a packed blob; an error (never a panic, nor more
    /// memory than MAX_PATH per file) for a truncated or damaged one.
    pub fn unpack(blob: &[u8]) -> Result<Packed, String> {
        let damaged = |what: &str| Err(format!("damaged stat keys ({what})"));
        let mut out = Packed {
            paths: Vec::with_capacity(blob.len()),
            keys: Vec::with_capacity(blob.len() / (8 + KEY_BYTES)),
        };
        let mut rest = blob;
        let mut last = (0, 0);
        while !rest.is_empty() {
            if rest.len() < 8 {
                return damaged("truncated");
            }
            let (shared, len) = (u32_at(rest), u32_at(&rest[4..]));
            rest = &rest[8..];
            if shared > last.1 - last.0 || len > MAX_PATH || shared + len > MAX_PATH {
                return damaged("path length");
            }
            if rest.len() < len + KEY_BYTES {
                return damaged("truncated");
            }
            let start = out.paths.len();
            out.paths.extend_from_within(last.0..last.0 + shared);
            out.paths.extend_from_slice(&rest[..len]);
            let k = &rest[len..len + KEY_BYTES];
            let key = StatKey {
                dev: u64_at(k, 0),
                ino: u64_at(k, 1),
                size: u64_at(k, 2),
                mtime_ns: u64_at(k, 3) as i64,
                ctime_ns: u64_at(k, 4) as i64,
            };
            last = (start, out.paths.len());
            out.keys.push((start, last.1, key));
            rest = &rest[len + KEY_BYTES..];
        }
        Ok(out)
    }

    pub fn map(&self) -> Known<'_> {
        let mut known = Known::with_capacity_and_hasher(self.keys.len(), Xxh3DefaultBuilder);
        for &(start, end, key) in &self.keys {
            known.insert(&self.paths[start..end], key);
        }
        known
    }
}

/// `known` packed as `Packed::unpack` reads it (the same keys give the
/// same bytes).
pub fn pack(known: &Known) -> Vec<u8> {
    let mut names: Vec<&[u8]> = known.keys().copied().collect();
    names.sort_unstable();
    let mut out = Vec::new();
    let mut last: &[u8] = &[];
    for bytes in names {
        let k = known[bytes];
        let shared = last.iter().zip(bytes).take_while(|(a, b)| a == b).count();
        // Paths longer than u32 cannot be: no file system allows them.
        out.extend_from_slice(&(shared as u32).to_le_bytes());
        out.extend_from_slice(&((bytes.len() - shared) as u32).to_le_bytes());
        out.extend_from_slice(&bytes[shared..]);
        for w in [k.dev, k.ino, k.size, k.mtime_ns as u64, k.ctime_ns as u64] {
            out.extend_from_slice(&w.to_le_bytes());
        }
        last = bytes;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::walk::{Filter, Root, Walk};

    fn walk(root: &std::path::Path) -> Walk {
        Walk::new(Root::given(&[root], None), false, Filter::default())
    }

    #[test]
    fn only_new_changed_and_vanished_come_back() {
        let dir = std::env::temp_dir().join(format!("fastindex-scan-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for name in ["a", "b", "c"] {
            std::fs::write(dir.join(name), name).unwrap();
        }
        let first = scan(walk(&dir), Known::default(), false);
        assert_eq!(first.changed.len(), 3);
        assert!(first.changed.iter().all(|c| !c.known));
        let mut known: Known = first
            .changed
            .iter()
            .map(|c| (c.entry.display.as_bytes(), c.key))
            .collect();
        let again = scan(walk(&dir), known.clone(), false);
        assert_eq!((again.changed.len(), again.unchanged), (0, 3));
        std::fs::write(dir.join("b"), "bigger").unwrap();
        std::fs::remove_file(dir.join("c")).unwrap();
        std::fs::write(dir.join("d"), "d").unwrap();
        let later = scan(walk(&dir), known.clone(), false);
        let mut changed: Vec<_> = later
            .changed
            .iter()
            .map(|c| {
                (
                    c.entry
                        .display
                        .to_string_lossy()
                        .rsplit('/')
                        .next()
                        .unwrap()
                        .to_owned(),
                    c.known,
                )
            })
            .collect();
        changed.sort();
        assert_eq!(changed, [("b".to_owned(), true), ("d".to_owned(), false)]);
        assert_eq!(later.vanished.len(), 1);
        assert!(later.vanished[0].to_string_lossy().ends_with("/c"));
        assert_eq!(later.unchanged, 1);
        // Moved: another inode and ctime, same size and mtime.
        for key in known.values_mut() {
            key.ino ^= 1;
            key.ctime_ns += 1;
        }
        assert_eq!(scan(walk(&dir), known.clone(), true).unchanged, 1);
        assert_eq!(scan(walk(&dir), known, false).unchanged, 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn packed_keys_come_back_and_damage_is_an_error() {
        let mut known = Known::default();
        let key = StatKey {
            dev: 1,
            ino: u64::MAX,
            size: 3,
            mtime_ns: -4,
            ctime_ns: 5,
        };
        known.insert(b"a/b.dcm", key);
        known.insert(b"", key);
        known.insert(b"a/b2.dcm", key);
        let blob = pack(&known);
        assert_eq!(Packed::unpack(&blob).unwrap().map(), known);
        assert!(Packed::unpack(&[]).unwrap().map().is_empty());
        for cut in 1..blob.len() {
            let _ = Packed::unpack(&blob[..cut]); // never a panic
        }
        for at in 0..blob.len() {
            let mut bad = blob.clone();
            bad[at] ^= 0xff;
            let _ = Packed::unpack(&bad);
        }
        assert!(Packed::unpack(&blob[..blob.len() - 1]).is_err());
        assert!(Packed::unpack(&[255, 255, 255, 255, 0, 0, 0, 0]).is_err());
    }

    #[test]
    fn a_stat_by_directory_is_the_stat_by_path() {
        let dir = std::env::temp_dir().join(format!("fastindex-dirs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(dir.join("a"), "a").unwrap();
        std::fs::write(dir.join("sub/b"), "bb").unwrap();
        std::os::unix::fs::symlink(dir.join("sub/b"), dir.join("link")).unwrap();
        let mut dirs = Dirs::default();
        for name in ["a", "sub/b", "link", "a"] {
            let path = dir.join(name);
            let want = StatKey::of(&std::fs::metadata(&path).unwrap());
            assert_eq!(dirs.stat(&path).unwrap(), want, "{name}");
        }
        let missing = dirs.stat(&dir.join("sub/gone")).unwrap_err();
        assert_eq!(missing.kind(), std::io::ErrorKind::NotFound);
        assert!(dirs.stat(&dir.join("nowhere/c")).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
