//! The threads that run durable writes (Post Key, Get Key, Decrypt RAIDA Key): commands
//! that wait for fdatasync. (Heavy reads stay on tokio's blocking pool under their own
//! limit, so that a flood of them can never hold these threads.)
//!
//! Why not tokio's blocking pool: a UDP request handed to it crossed three threads (the
//! UDP worker, a runtime worker polling the task, a blocking thread) and back to a runtime
//! worker to send the answer: four futex wake-ups per request, which a profile of Post
//! Key + Get Key pairs at 64 in flight showed as 30% of the server's CPU (each wake-up of
//! another CPU is an inter-processor interrupt, a VM exit on a virtual machine). Here the
//! UDP worker queues the request and the pool thread that runs it also sends the answer:
//! one wake-up, and none when a thread is already busy (it takes the next request when it
//! is done). Post Key and Get Key do not even wait for their directory fsync: the thread
//! leading that fsync finishes and sends their answers ([`raida_store::durable::DirSync`]),
//! and this thread takes the next request. TCP connection tasks await the answer through
//! a oneshot channel.
//!
//! Threads are started on demand up to a maximum (`durable_threads`, reloadable) and then
//! kept: the maximum is the number of fdatasyncs in flight at once (the disk's
//! parallelism, not the number of requests; those are bounded by the deferred-command
//! limits, in total and per address, before they get here). Measured on a 2-core VM with
//! Post Key + Get Key pairs at 64 in flight (one server, the setting reloaded between
//! runs): 8 threads 25,500-26,000 requests/s, 16 26,300-27,600, 32 24,200-24,700.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::{Condvar, Mutex};

/// Threads at most before config.toml's `durable_threads` (default 16) is applied.
pub(crate) const DEFAULT_BLOCKING_THREADS: usize = 16;

type Job = Box<dyn FnOnce() + Send>;

/// A bounded set of threads taking jobs in arrival order.
pub(crate) struct BlockingPool {
    shared: Arc<Shared>,
}

struct Shared {
    queue: Mutex<Queue>,
    ready: Condvar,
    /// Changed by a reload ([`BlockingPool::set_max_threads`]): threads beyond it end
    /// after their job.
    max_threads: AtomicUsize,
}

#[derive(Default)]
struct Queue {
    jobs: VecDeque<Job>,
    threads: usize,
    idle: usize,
    /// The pool was dropped: threads end once the queue is empty.
    closed: bool,
}

impl BlockingPool {
    /// A pool that starts up to `max_threads` threads (at least one) as work arrives.
    pub(crate) fn new(max_threads: usize) -> BlockingPool {
        BlockingPool {
            shared: Arc::new(Shared {
                queue: Mutex::new(Queue::default()),
                ready: Condvar::new(),
                max_threads: AtomicUsize::new(max_threads.max(1)),
            }),
        }
    }

    /// Queue `job`; an idle thread is woken, or a new one started while below the maximum.
    /// A job that panics is caught (and logged); the thread goes on.
    pub(crate) fn execute(&self, job: impl FnOnce() + Send + 'static) {
        let mut q = self.shared.queue.lock();
        q.jobs.push_back(Box::new(job));
        if q.idle > 0 {
            self.shared.ready.notify_one();
            return;
        }
        if q.threads < self.shared.max_threads.load(Ordering::Relaxed) {
            let shared = self.shared.clone();
            let name = format!("raida-blocking-{}", q.threads);
            match std::thread::Builder::new().name(name).spawn(move || worker(&shared)) {
                Ok(_) => q.threads += 1,
                Err(e) => {
                    tracing::error!(error = %e, "cannot start a blocking thread");
                    if q.threads == 0 {
                        // no thread would ever take it: run it here rather than lose it
                        let job = q.jobs.pop_back();
                        drop(q);
                        if let Some(job) = job {
                            run(job);
                        }
                    }
                }
            }
        }
    }

    /// Start at most `max` threads from now on (at least one); threads beyond it end after
    /// their job or at their next wake-up.
    pub(crate) fn set_max_threads(&self, max: usize) {
        self.shared.max_threads.store(max.max(1), Ordering::Relaxed);
        self.shared.ready.notify_all();
    }

    /// The maximum of threads.
    #[cfg(test)]
    pub(crate) fn max_threads(&self) -> usize {
        self.shared.max_threads.load(Ordering::Relaxed)
    }

    /// Threads running now.
    #[cfg(test)]
    pub(crate) fn threads(&self) -> usize {
        self.shared.queue.lock().threads
    }
}

impl Drop for BlockingPool {
    /// The threads end once the queue is empty (jobs already queued still run).
    fn drop(&mut self) {
        self.shared.queue.lock().closed = true;
        self.shared.ready.notify_all();
    }
}

fn worker(shared: &Shared) {
    loop {
        let job = {
            let mut q = shared.queue.lock();
            loop {
                if q.threads > shared.max_threads.load(Ordering::Relaxed) {
                    q.threads -= 1; // fewer threads since a reload
                    return;
                }
                if let Some(job) = q.jobs.pop_front() {
                    break job;
                }
                if q.closed {
                    q.threads -= 1;
                    return;
                }
                q.idle += 1;
                shared.ready.wait(&mut q);
                q.idle -= 1;
            }
        };
        run(job);
    }
}

fn run(job: Job) {
    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(job)).is_err() {
        tracing::error!("a blocking job panicked");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_every_job_on_at_most_the_maximum_of_threads() {
        let pool = BlockingPool::new(3);
        let done = Arc::new(AtomicUsize::new(0));
        let (tx, rx) = std::sync::mpsc::channel();
        for _ in 0..100 {
            let (done, tx) = (done.clone(), tx.clone());
            pool.execute(move || {
                done.fetch_add(1, Ordering::SeqCst);
                let _ = tx.send(std::thread::current().name().map(str::to_owned));
            });
        }
        let names: std::collections::HashSet<_> = (0..100).map(|_| rx.recv().ok().flatten()).collect();
        assert_eq!(done.load(Ordering::SeqCst), 100);
        assert!(names.len() <= 3 && pool.threads() <= 3, "{names:?}");
    }

    #[test]
    fn a_panicking_job_does_not_stop_its_thread() {
        let pool = BlockingPool::new(1);
        pool.execute(|| panic!("job panics"));
        let (tx, rx) = std::sync::mpsc::channel();
        pool.execute(move || {
            let _ = tx.send(7);
        });
        assert_eq!(rx.recv_timeout(std::time::Duration::from_secs(10)), Ok(7));
        assert_eq!(pool.threads(), 1);
    }

    #[test]
    fn a_lower_maximum_ends_the_threads_beyond_it() {
        let pool = BlockingPool::new(4);
        let gate = Arc::new(std::sync::Barrier::new(5));
        for _ in 0..4 {
            let gate = gate.clone();
            pool.execute(move || {
                gate.wait();
            });
        }
        gate.wait(); // four threads ran at once
        assert_eq!(pool.threads(), 4);
        pool.set_max_threads(1);
        for _ in 0..1000 {
            if pool.threads() == 1 {
                let (tx, rx) = std::sync::mpsc::channel();
                pool.execute(move || {
                    let _ = tx.send(());
                });
                assert!(rx.recv_timeout(std::time::Duration::from_secs(10)).is_ok());
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        panic!("threads beyond the new maximum did not end: {}", pool.threads());
    }

    #[test]
    fn threads_end_when_the_pool_is_dropped() {
        let pool = BlockingPool::new(2);
        let (tx, rx) = std::sync::mpsc::channel();
        pool.execute(move || {
            let _ = tx.send(());
        });
        assert!(rx.recv_timeout(std::time::Duration::from_secs(10)).is_ok());
        let shared = Arc::downgrade(&pool.shared);
        drop(pool);
        for _ in 0..1000 {
            if shared.upgrade().is_none() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        panic!("the pool's threads did not end");
    }
}
