//! Many reads in flight when the disk is slow. Parsing needs one file at a
//! time; a cold disk (or network storage) answers many requests at once
//! about as fast as one. So the walker hands every file to a pool of
//! threads that open it and ask the kernel to start reading its header
//! (`posix_fadvise(WILLNEED)`) before the batch reaches the parsers, which
//! then find the bytes in the page cache or already on their way.
//!
//! When the files are already cached this costs an open and a close per
//! file for nothing, so each batch is first sampled: a few files are asked
//! for their first byte without waiting for the disk (`RWF_NOWAIT`); only
//! when one is not cached does the batch go to the pool.

use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::AsRawFd;
use std::path::PathBuf;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread;

use crate::walk::{Entry, Found};

/// How much of each file to ask for: the header, whatever its private blocks.
const HEADER_BYTES: i64 = 64 * 1024;
/// Files of a batch sampled for being in the page cache.
const SAMPLES: usize = 4;

pub struct Prefetcher {
    tx: SyncSender<PathBuf>,
}

impl Prefetcher {
    pub fn new(threads: usize) -> Self {
        let threads = threads.max(1);
        // Bounded: the walker waits rather than queue the whole archive.
        let (tx, rx) = sync_channel::<PathBuf>(threads * 64);
        let rx = Arc::new(Mutex::new(rx));
        for _ in 0..threads {
            let rx = rx.clone();
            thread::spawn(move || work(&rx));
        }
        Prefetcher { tx }
    }

    /// Ask for the headers of a batch's files, unless they are cached.
    pub fn batch(&mut self, entries: &[Entry]) {
        let files: Vec<&Entry> = entries
            .iter()
            .filter(|e| matches!(e.found, Found::File))
            .collect();
        let step = (files.len() / SAMPLES).max(1);
        if files
            .iter()
            .step_by(step)
            .take(SAMPLES)
            .all(|e| cached(&e.path))
        {
            return;
        }
        for e in files {
            if self.tx.send(e.path.clone()).is_err() {
                return;
            }
        }
    }
}

fn open(path: &PathBuf) -> Option<std::fs::File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .ok()
}

/// Is the first byte of the file in the page cache? (Errors: say yes, so
/// that nothing is prefetched for a file the parser will report anyway.)
fn cached(path: &PathBuf) -> bool {
    let Some(f) = open(path) else { return true };
    let mut byte = [0u8; 1];
    let iov = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: 1,
    };
    // SAFETY: one iovec over a live one-byte buffer, on a descriptor owned here.
    let n = unsafe { libc::preadv2(f.as_raw_fd(), &iov, 1, 0, libc::RWF_NOWAIT) };
    n >= 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::EAGAIN)
}

fn work(rx: &Mutex<Receiver<PathBuf>>) {
    loop {
        let next = rx.lock().unwrap_or_else(|e| e.into_inner()).recv();
        let Ok(path) = next else { return };
        // Errors do not matter here: the parser meets them again and reports.
        if let Some(f) = open(&path) {
            // SAFETY: a plain system call on a descriptor this function owns.
            unsafe {
                libc::posix_fadvise(f.as_raw_fd(), 0, HEADER_BYTES, libc::POSIX_FADV_WILLNEED);
            }
        }
    }
}
