//! The process-wide parse threads that every run shares.
//!
//! A service that indexes on behalf of ten requests at once must not start
//! ten times the machine's cores: runs do not own reader threads, they
//! queue tasks (a batch of files each) here, and a fixed set of threads,
//! started on first use, takes them in order of arrival (each run queues
//! a bounded number at a time, so runs interleave). The count is the
//! machine's cores unless set with [`configure`]; lowering it lets idle
//! threads go, raising it starts more on the next task.
//!
//! A task belongs to a run (its id). Closing a run takes its queued tasks
//! back out ([`purge`]) — dropping them is how the run learns they will not
//! run — and the run waits only for those already running.

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, OnceLock};
use std::thread;

use crate::pipeline::lock;

/// One unit of work; what it owns is dropped whether it ran or was purged.
pub type Work = Box<dyn FnOnce() + Send>;

struct Task {
    run: u64,
    work: Work,
}

#[derive(Default)]
struct Queue {
    tasks: VecDeque<Task>,
    /// Threads alive (running or waiting for a task).
    threads: usize,
}

struct Pool {
    queue: Mutex<Queue>,
    ready: Condvar,
    /// Threads wanted.
    target: AtomicUsize,
}

fn pool() -> &'static Pool {
    static POOL: OnceLock<Pool> = OnceLock::new();
    POOL.get_or_init(|| Pool {
        queue: Mutex::new(Queue::default()),
        ready: Condvar::new(),
        target: AtomicUsize::new(cores()),
    })
}

/// The machine's cores (1 when it cannot tell).
pub fn cores() -> usize {
    thread::available_parallelism().map_or(1, |n| n.get())
}

/// A new run id, never 0.
pub fn run_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Set how many parse threads the process keeps (at least 1); returns the
/// number now wanted.
pub fn configure(threads: Option<usize>) -> usize {
    let p = pool();
    if let Some(n) = threads {
        p.target.store(n.max(1), Ordering::Relaxed);
        // Threads over the new count leave once idle.
        p.ready.notify_all();
    }
    p.target.load(Ordering::Relaxed)
}

/// The parse threads wanted.
pub fn threads() -> usize {
    pool().target.load(Ordering::Relaxed)
}

/// Queue `work` for run `run`. Err when there is no thread to run it and
/// none can be started (the task is dropped).
pub fn submit(run: u64, work: Work) -> Result<(), String> {
    let p = pool();
    let mut q = lock(&p.queue);
    q.tasks.push_back(Task { run, work });
    if q.threads < p.target.load(Ordering::Relaxed) {
        let spawned = thread::Builder::new()
            .name("fastindex-read".into())
            .spawn(serve);
        match spawned {
            Ok(_) => q.threads += 1,
            Err(e) if q.threads == 0 => {
                q.tasks.pop_back();
                return Err(format!("could not start a parse thread: {e}"));
            }
            Err(_) => {} // fewer threads than wanted: the others take it
        }
    }
    drop(q);
    p.ready.notify_one();
    Ok(())
}

/// Take back the queued tasks of `run` (they are dropped, not run).
pub fn purge(run: u64) {
    let mut taken = Vec::new();
    {
        let mut q = lock(&pool().queue);
        q.tasks.retain_mut(|t| {
            if t.run != run {
                return true;
            }
            // Moved out to drop below, outside the lock: a task's drop may
            // take its run's lock.
            taken.push(std::mem::replace(&mut t.work, Box::new(|| {})));
            false
        });
    }
    drop(taken);
}

/// A parse thread: take tasks until there are more threads than wanted.
fn serve() {
    let p = pool();
    loop {
        let task = {
            let mut q = lock(&p.queue);
            loop {
                if q.threads > p.target.load(Ordering::Relaxed) {
                    q.threads -= 1;
                    return;
                }
                if let Some(t) = q.tasks.pop_front() {
                    break t;
                }
                q = p.ready.wait(q).unwrap_or_else(|e| e.into_inner());
            }
        };
        // A task guards its own work (a failure fails its run); this keeps
        // the thread for the next one whatever happens.
        let _ = catch_unwind(AssertUnwindSafe(task.work));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc::channel;
    use std::sync::Arc;

    #[test]
    fn purged_tasks_are_dropped_not_run() {
        let id = run_id();
        let (tx, rx) = channel();
        let held = Arc::new(());
        // Block every thread so that the tasks below stay queued.
        let gate = Arc::new((Mutex::new(false), Condvar::new()));
        let blockers = threads();
        for _ in 0..blockers {
            let gate = gate.clone();
            submit(
                run_id(),
                Box::new(move || {
                    let (m, c) = &*gate;
                    let mut open = lock(m);
                    while !*open {
                        open = c.wait(open).unwrap();
                    }
                }),
            )
            .unwrap();
        }
        for _ in 0..5 {
            let (tx, held) = (tx.clone(), held.clone());
            submit(
                id,
                Box::new(move || {
                    let _ = &held;
                    tx.send(()).unwrap();
                }),
            )
            .unwrap();
        }
        purge(id);
        assert_eq!(Arc::strong_count(&held), 1, "purged tasks are dropped");
        *lock(&gate.0) = true;
        gate.1.notify_all();
        drop(tx);
        assert!(rx.recv().is_err(), "none of them ran");
    }
}
