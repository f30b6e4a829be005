//! Finding files, kept apart from reading them: a thread walks the roots
//! with walkdir and hands out batches of entries through a bounded channel,
//! so walking overlaps parsing and memory stays flat however large the tree.

use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Mutex;
use std::thread;

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use walkdir::{DirEntry, DirEntryExt, WalkDir};

use crate::prefetch::Prefetcher;

/// What the walk found at one path.
#[derive(Debug)]
pub enum Found {
    /// A regular file: to be read.
    File,
    /// Not read, by design (reason, message): FIFOs, sockets, devices,
    /// symlinks when not followed, symlink loops.
    Skip(&'static str, String),
    /// Could not be looked at (reason, message).
    Fail(&'static str, String),
}

#[derive(Debug)]
pub struct Entry {
    /// The path to open.
    pub path: PathBuf,
    /// The path as written in records: relative to the base, '/'-separated.
    pub display: OsString,
    pub found: Found,
}

/// A root to walk and how its paths are displayed.
pub struct Root {
    pub path: PathBuf,
    /// `path` relative to the base ("" when it is the base itself).
    pub display: OsString,
}

/// What the walk leaves out, besides what it cannot read.
#[derive(Default)]
pub struct Filter {
    /// `--exclude` globs, matched below each root.
    pub exclude: Exclude,
    /// (device, inode) of this run's own outputs: never indexed.
    pub own: Vec<(u64, u64)>,
}

/// `--exclude` patterns, read as ripgrep and fd read globs: a pattern
/// without `/` matches an entry's name at any depth (`.snapshot`, `*.tmp`);
/// one with `/` matches the path below the root (`scratch/**`; a leading
/// `/` is dropped); a trailing `/` matches directories only. An excluded
/// directory is listed once and not entered.
#[derive(Default)]
pub struct Exclude {
    /// Indexed by `by_path * 2 + dirs_only`.
    sets: [GlobSet; 4],
    empty: bool,
}

impl Exclude {
    pub fn new(patterns: &[String]) -> Result<Exclude, String> {
        let mut builders: [GlobSetBuilder; 4] = std::array::from_fn(|_| GlobSetBuilder::new());
        for pattern in patterns {
            let dirs_only = pattern.len() > 1 && pattern.ends_with('/');
            let p = pattern.trim_end_matches('/');
            let by_path = p.contains('/');
            let p = p.trim_start_matches('/');
            if p.is_empty() {
                return Err(format!("{pattern:?}: an empty pattern"));
            }
            let glob = GlobBuilder::new(p)
                .literal_separator(true)
                .build()
                .map_err(|e| e.to_string())?;
            builders[usize::from(by_path) * 2 + usize::from(dirs_only)].add(glob);
        }
        let sets = builders.map(|b| b.build());
        let mut out: [GlobSet; 4] = Default::default();
        for (slot, set) in out.iter_mut().zip(sets) {
            *slot = set.map_err(|e| e.to_string())?;
        }
        Ok(Exclude {
            sets: out,
            empty: patterns.is_empty(),
        })
    }

    /// `rel`: the entry's path below its root, never empty (a root itself
    /// is never excluded: the user named it).
    fn matches(&self, rel: &Path, is_dir: bool) -> bool {
        if self.empty {
            return false;
        }
        let name = rel.file_name().map(Path::new).unwrap_or(rel);
        let [names, names_dirs, paths, paths_dirs] = &self.sets;
        names.is_match(name)
            || paths.is_match(rel)
            || (is_dir && (names_dirs.is_match(name) || paths_dirs.is_match(rel)))
    }
}

/// Temporary files of fastindex's own outputs (`.fastindex-*.part`), which
/// may sit inside the archive being indexed.
pub fn is_own_part_file(name: &[u8]) -> bool {
    name.starts_with(b".fastindex-") && name.ends_with(b".part")
}

pub struct Walker {
    /// Several reader threads ask for batches; one at a time takes one.
    rx: Mutex<Receiver<Vec<Entry>>>,
}

/// Batches in flight between the walking thread and the readers: also how
/// far ahead of the parsers the prefetcher may read.
const QUEUE: usize = 8;

impl Walker {
    /// Walk `roots` on a thread; with `concurrency` > 0, each batch's
    /// headers are first requested that many at a time (see prefetch).
    pub fn start(
        roots: Vec<Root>,
        follow_symlinks: bool,
        batch: usize,
        concurrency: usize,
        filter: Filter,
    ) -> Walker {
        let (tx, rx) = sync_channel(QUEUE);
        let batch = batch.max(1);
        thread::spawn(move || {
            let mut prefetcher = (concurrency > 0).then(|| Prefetcher::new(concurrency));
            let mut send = |pending: Vec<Entry>| {
                if let Some(p) = prefetcher.as_mut() {
                    p.batch(&pending);
                }
                tx.send(pending).is_ok()
            };
            let mut pending = Vec::with_capacity(batch);
            for root in roots {
                let mut walk = WalkDir::new(&root.path)
                    .follow_links(follow_symlinks)
                    .follow_root_links(true)
                    .into_iter();
                while let Some(item) = walk.next() {
                    let entry = match item {
                        Ok(e) => {
                            let rel = e.path().strip_prefix(&root.path).unwrap_or(e.path());
                            let is_dir = e.file_type().is_dir();
                            if !rel.as_os_str().is_empty() && filter.exclude.matches(rel, is_dir) {
                                if is_dir {
                                    walk.skip_current_dir();
                                }
                                let found = Found::Skip("excluded", "excluded by --exclude".into());
                                Entry {
                                    display: display_of(&root, e.path()),
                                    path: e.into_path(),
                                    found,
                                }
                            } else {
                                match classify(&root, e, &filter) {
                                    Some(entry) => entry,
                                    None => continue,
                                }
                            }
                        }
                        Err(err) => failed(&root, err),
                    };
                    pending.push(entry);
                    if pending.len() == batch
                        && !send(std::mem::replace(&mut pending, Vec::with_capacity(batch)))
                    {
                        return; // the reader side is gone: stop walking
                    }
                }
            }
            if !pending.is_empty() {
                send(pending);
            }
        });
        Walker { rx: Mutex::new(rx) }
    }

    /// The next batch, or None when the walk is over. Blocks.
    pub fn next_batch(&self) -> Option<Vec<Entry>> {
        let rx = self.rx.lock().unwrap_or_else(|e| e.into_inner());
        rx.recv().ok()
    }
}

fn display_of(root: &Root, path: &Path) -> OsString {
    let rel = path.strip_prefix(&root.path).unwrap_or(path);
    let rel = rel.as_os_str().as_bytes();
    let prefix = root.display.as_bytes();
    let joined = match (prefix.is_empty(), rel.is_empty()) {
        (true, _) => rel.to_vec(),
        (false, true) => prefix.to_vec(),
        (false, false) if prefix.ends_with(b"/") => [prefix, rel].concat(),
        (false, false) => [prefix, b"/", rel].concat(),
    };
    OsString::from_vec(joined)
}

/// An entry the walk reached: None for directories (walked into) and for
/// fastindex's own outputs (not part of the archive).
fn classify(root: &Root, e: DirEntry, filter: &Filter) -> Option<Entry> {
    let mut ft = e.file_type();
    if e.depth() == 0 && ft.is_symlink() {
        // A link named on the command line is followed, as fd and rg do
        // (a link to a directory is walked by walkdir itself).
        match std::fs::metadata(e.path()) {
            Ok(m) => ft = m.file_type(),
            Err(_) => {
                let found = Found::Fail("unreadable", "dangling symbolic link".into());
                return Some(Entry {
                    display: display_of(root, e.path()),
                    path: e.into_path(),
                    found,
                });
            }
        }
    }
    if ft.is_dir() {
        return None;
    }
    let found = if ft.is_file() {
        if is_own(&e, filter) {
            return None;
        }
        Found::File
    } else if ft.is_symlink() {
        Found::Skip(
            "symlink",
            "symbolic link not followed (see --follow-symlinks)".into(),
        )
    } else {
        Found::Skip(
            "not_regular",
            "not a regular file (FIFO, socket or device)".into(),
        )
    };
    Some(Entry {
        display: display_of(root, e.path()),
        path: e.into_path(),
        found,
    })
}

fn is_own(e: &DirEntry, filter: &Filter) -> bool {
    if is_own_part_file(e.file_name().as_bytes()) {
        return true;
    }
    // The inode comes with the directory entry; only a match costs a stat.
    !filter.own.is_empty()
        && filter.own.iter().any(|&(_, ino)| ino == e.ino())
        && e.metadata()
            .map(|m| filter.own.contains(&(m.dev(), m.ino())))
            .unwrap_or(false)
}

fn failed(root: &Root, err: walkdir::Error) -> Entry {
    let path = err
        .path()
        .map(PathBuf::from)
        .unwrap_or_else(|| root.path.clone());
    let found = if err.loop_ancestor().is_some() {
        Found::Skip("symlink_loop", err.to_string())
    } else if path
        .symlink_metadata()
        .map(|m| m.file_type().is_symlink())
        .unwrap_or(false)
        && !path.exists()
    {
        Found::Fail("unreadable", "dangling symbolic link".into())
    } else {
        Found::Fail("unreadable", err.to_string())
    };
    Entry {
        display: display_of(root, &path),
        path,
        found,
    }
}
