//! Many reads in flight when the disk is slow. Parsing needs one file at a
//! time; a cold disk (or network storage) answers many requests at once
//! about as fast as one. So the `Files` fetch offers a stage (`Ahead`)
//! that hands every file of a batch to the process's prefetch threads
//! (shared by every run, as the parse threads are), which open it and
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
pub use linux::{configure, Prefetcher, THREADS};

/// The default number of prefetch threads.
#[cfg(not(target_os = "linux"))]
pub const THREADS: usize = 16;

/// Off Linux there are no prefetch threads; the setting is kept for show.
#[cfg(not(target_os = "linux"))]
pub fn configure(n: Option<usize>) -> usize {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static TARGET: AtomicUsize = AtomicUsize::new(THREADS);
    if let Some(n) = n {
        TARGET.store(n.max(1), Ordering::Relaxed);
    }
    TARGET.load(Ordering::Relaxed)
}

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
    use std::collections::VecDeque;
    use std::fs::File;
    use std::os::unix::io::AsRawFd;
    use std::panic::{catch_unwind, AssertUnwindSafe};
    use std::path::{Path, PathBuf};
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::{Arc, Condvar, Mutex, OnceLock};
    use std::thread;
    use std::time::Duration;

    use super::Cached;
    use crate::sources::{Ahead, Entry, Found};

    /// How much of each file to ask for: the header, whatever its private
    /// blocks.
    const HEADER_BYTES: i64 = 64 * 1024;
    /// Files of a batch sampled for being in the page cache.
    const SAMPLES: usize = 4;

    /// The prefetch threads of the process, shared by every run (as the
    /// parse threads are, see `pool`): requests from all runs queue here.
    struct Threads {
        queue: Mutex<Queue>,
        /// Signalled when a request is queued or taken.
        changed: Condvar,
        target: AtomicUsize,
    }

    #[derive(Default)]
    struct Queue {
        requests: VecDeque<(PathBuf, Arc<Ticket>)>,
        threads: usize,
    }

    /// Requests queued at most per thread: the listing waits rather than
    /// queue the whole archive.
    const BACKLOG: usize = 64;
    /// The default number of prefetch threads.
    pub const THREADS: usize = 16;

    fn threads() -> &'static Threads {
        static THREADS_: OnceLock<Threads> = OnceLock::new();
        THREADS_.get_or_init(|| Threads {
            queue: Mutex::new(Queue::default()),
            changed: Condvar::new(),
            target: AtomicUsize::new(THREADS),
        })
    }

    /// Set how many prefetch threads the process keeps (at least 1);
    /// returns the number now wanted.
    pub fn configure(n: Option<usize>) -> usize {
        let t = threads();
        if let Some(n) = n {
            t.target.store(n.max(1), Ordering::Relaxed);
            t.changed.notify_all();
        }
        t.target.load(Ordering::Relaxed)
    }

    /// One run's requests: how many are still queued, and whether one of
    /// them failed (a prefetch thread panicked on it).
    #[derive(Default)]
    struct Ticket {
        pending: Mutex<usize>,
        drained: Condvar,
        failed: Mutex<Option<String>>,
        cancelled: AtomicBool,
    }

    impl Ticket {
        fn done(&self, failed: Option<String>) {
            if let Some(f) = failed {
                lock(&self.failed).get_or_insert(f);
            }
            *lock(&self.pending) -= 1;
            self.drained.notify_all();
        }

        fn failure(&self) -> Result<(), String> {
            lock(&self.failed).clone().map_or(Ok(()), Err)
        }
    }

    /// A run's handle on the shared prefetch threads.
    pub struct Prefetcher {
        ticket: Arc<Ticket>,
    }

    impl Prefetcher {
        /// None for `concurrency` 0 (no stage); otherwise the stage, on the
        /// process's prefetch threads (see `configure`).
        pub fn start(concurrency: usize) -> Option<Prefetcher> {
            (concurrency > 0).then(|| Prefetcher {
                ticket: Arc::new(Ticket::default()),
            })
        }

        /// Queue one request; false when stopped first.
        fn request(&self, path: PathBuf, stop: &AtomicBool) -> Result<bool, String> {
            let t = threads();
            let mut q = lock(&t.queue);
            let target = t.target.load(Ordering::Relaxed);
            while q.requests.len() >= target * BACKLOG {
                if stop.load(Ordering::Relaxed) {
                    return Ok(false);
                }
                // Timed: a stop is not signalled here.
                q = t
                    .changed
                    .wait_timeout(q, Duration::from_millis(20))
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
            if q.threads < target {
                match thread::Builder::new()
                    .name("fastindex-prefetch".into())
                    .spawn(work)
                {
                    Ok(_) => q.threads += 1,
                    Err(e) if q.threads == 0 => {
                        return Err(format!("could not start a prefetch thread: {e}"))
                    }
                    Err(_) => {}
                }
            }
            *lock(&self.ticket.pending) += 1;
            q.requests.push_back((path, self.ticket.clone()));
            drop(q);
            t.changed.notify_all();
            Ok(true)
        }

        /// Wait until this run's requests are all taken and done.
        fn drain(&self) {
            let mut pending = lock(&self.ticket.pending);
            while *pending > 0 {
                pending = self
                    .ticket
                    .drained
                    .wait(pending)
                    .unwrap_or_else(|e| e.into_inner());
            }
        }
    }

    impl Ahead for Prefetcher {
        /// Ask for the headers of a batch's files, unless they are cached.
        fn batch(&mut self, entries: &[Entry], stop: &AtomicBool) -> Result<(), String> {
            self.ticket.failure()?;
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
                if stop.load(Ordering::Relaxed) || !self.request(e.path.clone(), stop)? {
                    return Ok(());
                }
            }
            Ok(())
        }

        fn finish(self: Box<Self>) -> Result<(), String> {
            self.drain();
            self.ticket.failure()
        }
    }

    impl Drop for Prefetcher {
        /// Not finished (the listing stopped or unwinding): what is still
        /// queued is skipped, and nothing of the run's outlives it.
        fn drop(&mut self) {
            self.ticket.cancelled.store(true, Ordering::Relaxed);
            self.drain();
        }
    }

    fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
        crate::pipeline::lock(m)
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

    /// A prefetch thread: open each file and ask for its header, until
    /// there are more threads than wanted.
    fn work() {
        let t = threads();
        loop {
            let (path, ticket) = {
                let mut q = lock(&t.queue);
                loop {
                    if q.threads > t.target.load(Ordering::Relaxed) {
                        q.threads -= 1;
                        return;
                    }
                    if let Some(r) = q.requests.pop_front() {
                        break r;
                    }
                    q = t.changed.wait(q).unwrap_or_else(|e| e.into_inner());
                }
            };
            t.changed.notify_all(); // room for a waiting listing
            if ticket.cancelled.load(Ordering::Relaxed) {
                ticket.done(None);
                continue;
            }
            let asked = catch_unwind(AssertUnwindSafe(|| ask(&path)));
            ticket.done(asked.err().map(|panic| {
                format!(
                    "a prefetch thread panicked: {}",
                    crate::pipeline::panic_message(&*panic)
                )
            }));
        }
    }

    fn ask(path: &Path) {
        #[cfg(test)]
        if path.as_os_str() == tests::PANIC_PATH {
            panic!("a test asked this prefetch thread to panic");
        }
        // Errors do not matter here: the parser meets them again and
        // reports.
        if let Some(f) = open(path) {
            // SAFETY: a plain system call on a descriptor this function
            // owns.
            unsafe {
                libc::posix_fadvise(f.as_raw_fd(), 0, HEADER_BYTES, libc::POSIX_FADV_WILLNEED);
            }
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        pub const PANIC_PATH: &str = "/fastindex-test/panic-in-prefetch";

        #[test]
        fn a_prefetch_thread_that_panics_fails_the_stage_not_the_thread() {
            let p = Prefetcher::start(1).expect("a stage");
            let stop = AtomicBool::new(false);
            assert!(p.request(PANIC_PATH.into(), &stop).expect("queued"));
            let err = Box::new(p).finish().expect_err("the panic is reported");
            assert!(err.contains("panicked"), "{err}");
            // The shared threads are still there for the next run.
            let q = Prefetcher::start(1).expect("a stage");
            assert!(q.request("/nonexistent/x".into(), &stop).expect("queued"));
            assert!(Box::new(q).finish().is_ok());
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
