//! Finding files, kept apart from reading them: a thread walks the roots
//! with walkdir and hands out batches of entries through a bounded channel,
//! so walking overlaps parsing and memory stays flat however large the tree.

use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Mutex;
use std::thread;

use walkdir::WalkDir;

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
    pub fn start(roots: Vec<Root>, follow_symlinks: bool, batch: usize, concurrency: usize) -> Walker {
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
                for item in WalkDir::new(&root.path).follow_links(follow_symlinks).follow_root_links(true) {
                    if let Some(entry) = classify(&root, item) {
                        pending.push(entry);
                        if pending.len() == batch && !send(std::mem::replace(&mut pending, Vec::with_capacity(batch))) {
                            return; // the reader side is gone: stop walking
                        }
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

fn display_of(root: &Root, path: &std::path::Path) -> OsString {
    let rel = path.strip_prefix(&root.path).unwrap_or(path);
    let rel = rel.as_os_str().as_bytes();
    let prefix = root.display.as_bytes();
    let joined = match (prefix.is_empty(), rel.is_empty()) {
        (true, _) => rel.to_vec(),
        (false, true) => prefix.to_vec(),
        (false, false) => [prefix, b"/", rel].concat(),
    };
    OsString::from_vec(joined)
}

fn classify(root: &Root, item: walkdir::Result<walkdir::DirEntry>) -> Option<Entry> {
    match item {
        Ok(e) => {
            let ft = e.file_type();
            if ft.is_dir() {
                return None;
            }
            let found = if ft.is_file() {
                Found::File
            } else if ft.is_symlink() {
                Found::Skip("symlink", "symbolic link not followed (see --follow-symlinks)".into())
            } else {
                Found::Skip("not_regular", "not a regular file (FIFO, socket or device)".into())
            };
            Some(Entry { display: display_of(root, e.path()), path: e.into_path(), found })
        }
        Err(err) => {
            let path = err.path().map(PathBuf::from).unwrap_or_else(|| root.path.clone());
            let found = if err.loop_ancestor().is_some() {
                Found::Skip("symlink_loop", err.to_string())
            } else if path.symlink_metadata().map(|m| m.file_type().is_symlink()).unwrap_or(false) && !path.exists() {
                Found::Fail("unreadable", "dangling symbolic link".into())
            } else {
                Found::Fail("unreadable", err.to_string())
            };
            Some(Entry { display: display_of(root, &path), path, found })
        }
    }
}
