//! Many reads in flight when the disk is slow. Parsing needs one file at a
//! time; a cold disk (or network storage) answers many requests at once
//! about as fast as one. So the `Files` fetch offers a stage (`Ahead`)
//! that hands every file of a batch to a pool of threads that open it and
//! ask the kernel to start reading its header (`posix_fadvise(WILLNEED)`)
//! before the batch reaches the parsers, which then find the bytes in the
//! page cache or already on their way.
//!
//! When the files are already cached this costs an open and a close per
//! file for nothing, so each batch is first sampled: a few files are asked
//! for their first byte without waiting for the disk (`preadv2` with
//! `RWF_NOWAIT`). Some file systems cannot say (tmpfs, and NFS, SMB or FUSE
//! may answer EOPNOTSUPP): then `mincore` on a mapping of the first page
//! says whether it is resident, and when that cannot tell either the batch
//! is prefetched (on a warm cache that costs an open, an fadvise and a
//! close per file, and nothing at all on tmpfs, whose pages are always in
//! memory and are never sampled as missing).
//!
//! Linux only: elsewhere there is no stage (`Prefetcher::start` is None).

#[cfg(target_os = "linux")]
pub use linux::Prefetcher;

/// No prefetching off Linux: the readers ask for the bytes themselves.
#[cfg(not(target_os = "linux"))]
pub struct Prefetcher;

#[cfg(not(target_os = "linux"))]
impl Prefetcher {
    pub fn start(_threads: usize) -> Option<Prefetcher> {
        None
    }
}

#[cfg(not(target_os = "linux"))]
impl super::Ahead for Prefetcher {
    fn batch(
        &mut self,
        _entries: &[super::Entry],
        _stop: &std::sync::atomic::AtomicBool,
    ) -> Result<(), String> {
        Ok(())
    }

    fn finish(self: Box<Self>) -> Result<(), String> {
        Ok(())
    }
}

/// What sampling a file says about its first page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cached {
    Yes,
    No,
    /// Neither probe could tell: prefetched, to be safe.
    Unknown,
}

#[cfg(target_os = "linux")]
pub use linux::cached;

#[cfg(target_os = "linux")]
mod linux {
    use std::fs::File;
    use std::os::unix::io::AsRawFd;
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
    use std::sync::{Arc, Mutex};
    use std::thread::{self, JoinHandle};

    use super::Cached;
    use crate::sources::{Ahead, Entry, Found};

    /// How much of each file to ask for: the header, whatever its private
    /// blocks.
    const HEADER_BYTES: i64 = 64 * 1024;
    /// Files of a batch sampled for being in the page cache.
    const SAMPLES: usize = 4;

    pub struct Prefetcher {
        tx: Option<SyncSender<PathBuf>>,
        workers: Vec<JoinHandle<()>>,
    }

    impl Prefetcher {
        /// `threads` requests in flight at most; None for 0 (no stage).
        pub fn start(threads: usize) -> Option<Prefetcher> {
            if threads == 0 {
                return None;
            }
            // Bounded: the listing waits rather than queue the whole archive.
            let (tx, rx) = sync_channel::<PathBuf>(threads * 64);
            let rx = Arc::new(Mutex::new(rx));
            let mut workers = Vec::with_capacity(threads);
            for _ in 0..threads {
                let rx = rx.clone();
                let spawned = thread::Builder::new()
                    .name("fastindex-prefetch".into())
                    .spawn(move || work(&rx));
                match spawned {
                    Ok(handle) => workers.push(handle),
                    // Fewer threads than asked for; none at all is no stage.
                    Err(_) => break,
                }
            }
            (!workers.is_empty()).then_some(Prefetcher {
                tx: Some(tx),
                workers,
            })
        }
    }

    impl Ahead for Prefetcher {
        /// Ask for the headers of a batch's files, unless they are cached.
        fn batch(&mut self, entries: &[Entry], stop: &AtomicBool) -> Result<(), String> {
            let Some(tx) = &self.tx else {
                return Ok(());
            };
            let files: Vec<&Entry> = entries
                .iter()
                // Objects of an object store have a stage of their own.
                .filter(|e| matches!(e.found, Found::File) && e.object.is_none())
                .collect();
            let step = (files.len() / SAMPLES).max(1);
            if files
                .iter()
                .step_by(step)
                .take(SAMPLES)
                .all(|e| cached(&e.path) == Cached::Yes)
            {
                return Ok(());
            }
            for e in files {
                if stop.load(Ordering::Relaxed) {
                    return Ok(());
                }
                if tx.send(e.path.clone()).is_err() {
                    // Every worker is gone: they died.
                    self.tx = None;
                    return Err("the prefetch threads are gone".into());
                }
            }
            Ok(())
        }

        fn finish(mut self: Box<Self>) -> Result<(), String> {
            self.join()
        }
    }

    impl Prefetcher {
        fn join(&mut self) -> Result<(), String> {
            self.tx = None; // the workers' channel closes: they return
            let mut failed = Ok(());
            for w in self.workers.drain(..) {
                if let Err(panic) = w.join() {
                    failed = Err(format!(
                        "a prefetch thread panicked: {}",
                        crate::pipeline::panic_message(&*panic)
                    ));
                }
            }
            failed
        }
    }

    impl Drop for Prefetcher {
        /// Joined also when not finished (the listing thread unwinding).
        fn drop(&mut self) {
            let _ = self.join();
        }
    }

    fn open(path: &Path) -> Option<File> {
        crate::dicom::reader::open(path).ok()
    }

    /// Is the first page of the file in the page cache? A file that cannot
    /// be opened, or is empty, counts as cached: there is nothing to ask
    /// for (the parser reports it).
    pub fn cached(path: &Path) -> Cached {
        let Some(f) = open(path) else {
            return Cached::Yes;
        };
        let mut byte = [0u8; 1];
        let iov = libc::iovec {
            iov_base: byte.as_mut_ptr().cast(),
            iov_len: 1,
        };
        // SAFETY: one iovec over a live one-byte buffer, on a descriptor
        // owned here.
        let n = unsafe { libc::preadv2(f.as_raw_fd(), &iov, 1, 0, libc::RWF_NOWAIT) };
        if n >= 0 {
            return Cached::Yes;
        }
        match std::io::Error::last_os_error().raw_os_error() {
            Some(libc::EAGAIN) => Cached::No,
            // EOPNOTSUPP (no FMODE_NOWAIT: tmpfs; NFS, SMB, FUSE may
            // answer so too), EINVAL (a kernel before 4.14), ...: ask the
            // page cache another way.
            _ => resident(&f),
        }
    }

    /// `mincore` on a mapping of the file's first page.
    fn resident(f: &File) -> Cached {
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        if page <= 0 {
            return Cached::Unknown;
        }
        let page = page as usize;
        // SAFETY: a read-only shared mapping of one page of a descriptor
        // owned here; checked for failure, unmapped below, never read
        // (mincore only looks at the page tables).
        let map = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                page,
                libc::PROT_READ,
                libc::MAP_SHARED,
                f.as_raw_fd(),
                0,
            )
        };
        if map == libc::MAP_FAILED {
            // An empty file cannot be mapped, and has nothing to prefetch.
            return match f.metadata() {
                Ok(m) if m.len() == 0 => Cached::Yes,
                _ => Cached::Unknown,
            };
        }
        let mut vec = [0u8; 1];
        // SAFETY: `map` is a live mapping of `page` bytes, `vec` holds one
        // byte per page of it.
        let r = unsafe { libc::mincore(map, page, vec.as_mut_ptr()) };
        // SAFETY: the mapping made above, unmapped once.
        unsafe { libc::munmap(map, page) };
        match (r, vec[0] & 1) {
            (0, 1) => Cached::Yes,
            (0, _) => Cached::No,
            _ => Cached::Unknown,
        }
    }

    fn work(rx: &Mutex<Receiver<PathBuf>>) {
        loop {
            let next = rx.lock().unwrap_or_else(|e| e.into_inner()).recv();
            let Ok(path) = next else { return };
            #[cfg(test)]
            if path.as_os_str() == tests::PANIC_PATH {
                panic!("a test asked this prefetch thread to panic");
            }
            // Errors do not matter here: the parser meets them again and
            // reports.
            if let Some(f) = open(&path) {
                // SAFETY: a plain system call on a descriptor this function
                // owns.
                unsafe {
                    libc::posix_fadvise(f.as_raw_fd(), 0, HEADER_BYTES, libc::POSIX_FADV_WILLNEED);
                }
            }
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        pub const PANIC_PATH: &str = "/fastindex-test/panic-in-prefetch";

        #[test]
        fn a_prefetch_thread_that_panics_fails_the_stage() {
            let p = Prefetcher::start(1).expect("a stage");
            let tx = p.tx.clone().expect("a channel");
            tx.send(PANIC_PATH.into()).expect("sent");
            drop(tx);
            let err = Box::new(p).finish().expect_err("the panic is reported");
            assert!(err.contains("panicked"), "{err}");
        }

        #[test]
        fn cached_tells_a_file_in_memory() {
            // tmpfs answers EOPNOTSUPP to RWF_NOWAIT: mincore must still say
            // its pages are resident.
            let dir = std::path::Path::new("/dev/shm");
            if !dir.is_dir() {
                return;
            }
            let path = dir.join(format!("fastindex-cached-{}", std::process::id()));
            std::fs::write(&path, vec![7u8; 8192]).expect("write");
            let got = cached(&path);
            let _ = std::fs::remove_file(&path);
            assert_eq!(got, Cached::Yes);
            assert_eq!(
                cached(std::path::Path::new("/nonexistent/fastindex")),
                Cached::Yes
            );
        }
    }
}
