//! What changed since the last run: a listing (a walk) compared with the
//! stat keys a state holds, without reading any file. Each file costs one
//! `stat`; only files that are new or whose key differs come back (with
//! their new key), and the known paths the listing did not meet (gone).
//! Unchanged files are only counted, so a re-run over an unchanged archive
//! makes no object per file on the Python side.

use std::collections::HashMap;
use std::ffi::OsString;
use std::os::unix::fs::MetadataExt;

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

/// Compare `listing` with `known` (display → key of the last run).
pub fn scan(
    listing: impl Iterator<Item = Entry>,
    mut known: HashMap<OsString, StatKey>,
    moved: bool,
) -> Scan {
    let mut out = Scan::default();
    for entry in listing {
        // A known file now left out or unreadable is gone from the index
        // (and listed with its reason): it stays in `known`, so vanished.
        if !matches!(entry.found, Found::File) {
            out.others.push(entry);
            continue;
        }
        // The walk has the type from the directory; the key needs a stat
        // (following a link the walk followed).
        let key = match std::fs::metadata(&entry.path) {
            Ok(m) => StatKey::of(&m),
            Err(e) => {
                let found = Found::Fail(outcome::UNREADABLE.name, e.to_string());
                out.others.push(Entry { found, ..entry });
                continue;
            }
        };
        match known.remove(&entry.display) {
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
    out.vanished = known.into_keys().collect();
    out.vanished.sort();
    out
}

/// The stat keys of the last run, packed for the state (`scan_keys`):
/// per file, the display path's length (u32 LE), its bytes, then dev,
/// ino, size, mtime_ns, ctime_ns (8 bytes LE each). A run that changed
/// nothing hands the stored blob straight back to `scan`, without a
/// Python object per file.
pub type Known = HashMap<OsString, StatKey>;

const KEY_BYTES: usize = 40;

/// The keys of a packed blob; an error (never a panic) for a truncated
/// or damaged one.
pub fn unpack(blob: &[u8]) -> Result<Known, String> {
    use std::os::unix::ffi::OsStrExt;
    let mut known = Known::new();
    let mut rest = blob;
    let word = |b: &[u8], i: usize| u64::from_le_bytes(b[i * 8..i * 8 + 8].try_into().unwrap());
    while !rest.is_empty() {
        if rest.len() < 4 {
            return Err("truncated stat keys".into());
        }
        let (len, tail) = rest.split_at(4);
        let len = u32::from_le_bytes(len.try_into().unwrap()) as usize;
        if tail.len() < len.saturating_add(KEY_BYTES) {
            return Err("truncated stat keys".into());
        }
        let (name, tail) = tail.split_at(len);
        let (k, tail) = tail.split_at(KEY_BYTES);
        let key = StatKey {
            dev: word(k, 0),
            ino: word(k, 1),
            size: word(k, 2),
            mtime_ns: word(k, 3) as i64,
            ctime_ns: word(k, 4) as i64,
        };
        known.insert(std::ffi::OsStr::from_bytes(name).to_os_string(), key);
        rest = tail;
    }
    Ok(known)
}

/// `known` packed as `unpack` reads it, in byte order of the paths (the
/// same keys give the same bytes).
pub fn pack(known: &Known) -> Vec<u8> {
    use std::os::unix::ffi::OsStrExt;
    let mut names: Vec<&OsString> = known.keys().collect();
    names.sort();
    let size = names.iter().map(|n| 4 + n.len() + KEY_BYTES).sum();
    let mut out = Vec::with_capacity(size);
    for name in names {
        let k = known[name];
        let bytes = name.as_bytes();
        // A path longer than 4 GiB cannot be: no file system allows it.
        out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        out.extend_from_slice(bytes);
        for w in [k.dev, k.ino, k.size, k.mtime_ns as u64, k.ctime_ns as u64] {
            out.extend_from_slice(&w.to_le_bytes());
        }
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
        let first = scan(walk(&dir), HashMap::new(), false);
        assert_eq!(first.changed.len(), 3);
        assert!(first.changed.iter().all(|c| !c.known));
        let mut known: HashMap<OsString, StatKey> = first
            .changed
            .iter()
            .map(|c| (c.entry.display.clone(), c.key))
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
        let mut known = Known::new();
        let key = StatKey {
            dev: 1,
            ino: u64::MAX,
            size: 3,
            mtime_ns: -4,
            ctime_ns: 5,
        };
        known.insert(OsString::from("a/b.dcm"), key);
        known.insert(OsString::from(""), key);
        let blob = pack(&known);
        assert_eq!(unpack(&blob).unwrap(), known);
        assert!(unpack(&[]).unwrap().is_empty());
        for cut in 1..blob.len() {
            let _ = unpack(&blob[..cut]); // never a panic
        }
        assert!(unpack(&blob[..blob.len() - 1]).is_err());
        assert!(unpack(&[255, 255, 255, 255, 0]).is_err());
    }
}
