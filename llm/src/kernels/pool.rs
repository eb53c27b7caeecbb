//! A fork-join thread pool for the kernels, made for many short parallel regions: a decode step
//! of a small model is a few hundred products of well under a millisecond each, so a region
//! must start and end in about a microsecond. Workers spin briefly on an epoch counter between
//! regions and only then sleep on a condition variable; the calling thread takes share 0.
//!
//! On WebAssembly without threads every region runs on the caller. A WebAssembly build with
//! threads (the `atomics` target feature and a shared memory) has no way of its own to start
//! one: the embedder hands the pool a spawner ([`set_thread_spawner`]; in the browser, one that
//! gives each worker to a Web Worker started beforehand), and the workers then run as natively.

/// One parallel region's work: `f(share, shares)`.
type Job<'a> = &'a (dyn Fn(usize, usize) + Sync);

/// Threads that run parallel regions together. `Pool::new(1)` runs everything on the caller.
pub struct Pool {
    threads: usize,
    #[cfg(any(not(target_family = "wasm"), target_feature = "atomics"))]
    inner: Option<workers::Inner>,
}

/// Starts one thread running the given function; `false` when it cannot.
#[cfg(all(target_family = "wasm", target_feature = "atomics"))]
pub type Spawner = fn(Box<dyn FnOnce() + Send>) -> bool;

#[cfg(all(target_family = "wasm", target_feature = "atomics"))]
static SPAWNER: std::sync::OnceLock<Spawner> = std::sync::OnceLock::new();

/// Gives a WebAssembly build with threads its way of starting them (the first call wins).
/// Without one, every pool of such a build has the caller's thread only.
#[cfg(all(target_family = "wasm", target_feature = "atomics"))]
pub fn set_thread_spawner(spawn: Spawner) {
    let _ = SPAWNER.set(spawn);
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Pool({} threads)", self.threads)
    }
}

impl Pool {
    /// A pool of `threads` threads in all (the caller counts as one; 0 means 1), or of as
    /// many as could be started ([`Pool::threads`] says).
    pub fn new(threads: usize) -> Self {
        let threads = threads.max(1);
        #[cfg(all(target_family = "wasm", not(target_feature = "atomics")))]
        {
            let _ = threads;
            Pool { threads: 1 }
        }
        #[cfg(any(not(target_family = "wasm"), target_feature = "atomics"))]
        {
            let inner = (threads > 1)
                .then(|| workers::Inner::start(threads - 1))
                .filter(|inner| inner.workers() > 0);
            let threads = 1 + inner.as_ref().map_or(0, workers::Inner::workers);
            Pool { threads, inner }
        }
    }

    /// As many threads as the machine has cores, or `$LADDER_THREADS`.
    pub fn default_threads() -> usize {
        if let Some(n) = std::env::var("LADDER_THREADS")
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
        {
            return n.max(1);
        }
        std::thread::available_parallelism().map_or(1, |n| n.get())
    }

    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Runs `f(i, shares)` for every `i < shares` (at most [`Pool::threads`]) in parallel and
    /// returns when all are done. Regions from several callers take turns.
    pub fn run(&self, shares: usize, f: Job<'_>) {
        #[cfg(any(not(target_family = "wasm"), target_feature = "atomics"))]
        if let (Some(inner), true) = (&self.inner, shares.min(self.threads) > 1) {
            inner.run(shares.min(self.threads), f);
            return;
        }
        let _ = shares;
        f(0, 1);
    }
}

impl Pool {
    /// Calls `f(item, piece)` for each piece `out[item·chunk..][..chunk]` of `out` (the last
    /// one may be shorter), the items split in contiguous ranges over the threads.
    pub fn for_each_chunk(
        &self,
        out: &mut [f32],
        chunk: usize,
        f: &(dyn Fn(usize, &mut [f32]) + Sync),
    ) {
        self.chunks(out, chunk, false, f);
    }

    /// [`Pool::for_each_chunk`] with the items dealt out in turn (thread `t` of `n` takes items
    /// `t`, `t + n`, …), for items whose cost grows along `out`: causal attention, where each
    /// row attends to one more position than the one before.
    pub fn for_each_chunk_interleaved(
        &self,
        out: &mut [f32],
        chunk: usize,
        f: &(dyn Fn(usize, &mut [f32]) + Sync),
    ) {
        self.chunks(out, chunk, true, f);
    }

    fn chunks(
        &self,
        out: &mut [f32],
        chunk: usize,
        interleaved: bool,
        f: &(dyn Fn(usize, &mut [f32]) + Sync),
    ) {
        if chunk == 0 || out.is_empty() {
            return;
        }
        let len = out.len();
        let items = len.div_ceil(chunk);
        let base = ChunkPtr(out.as_mut_ptr());
        self.run(items, &|share, shares| {
            let (start, end) = crate::kernels::split(items, share, shares);
            let mine = if interleaved {
                (share..items).step_by(shares.max(1))
            } else {
                (start..end).step_by(1)
            };
            for item in mine {
                let at = item * chunk;
                // SAFETY: pieces are disjoint and inside `out`, each belongs to exactly one
                // share, and the borrow of `out` outlives the region.
                let piece = unsafe {
                    std::slice::from_raw_parts_mut(base.get().add(at), chunk.min(len - at))
                };
                f(item, piece);
            }
        });
    }
}

/// The base of the chunks `for_each_chunk` hands out.
#[derive(Clone, Copy)]
struct ChunkPtr(*mut f32);

impl ChunkPtr {
    fn get(self) -> *mut f32 {
        self.0
    }
}

// SAFETY: shares write disjoint chunks and are joined before the borrow ends.
unsafe impl Send for ChunkPtr {}
unsafe impl Sync for ChunkPtr {}

#[cfg(any(not(target_family = "wasm"), target_feature = "atomics"))]
mod workers {
    use super::Job;
    use std::cell::UnsafeCell;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::{Arc, Condvar, Mutex};

    /// A started worker: joined on drop natively; a WebAssembly worker just returns (its Web
    /// Worker is the embedder's).
    #[cfg(not(target_family = "wasm"))]
    type Handle = std::thread::JoinHandle<()>;
    #[cfg(target_family = "wasm")]
    type Handle = ();

    /// Starts `run` as worker `share`.
    #[cfg(not(target_family = "wasm"))]
    fn spawn(share: usize, run: impl FnOnce() + Send + 'static) -> Option<Handle> {
        std::thread::Builder::new()
            .name(format!("llm-kernel-{share}"))
            .spawn(run)
            .ok()
    }

    #[cfg(target_family = "wasm")]
    fn spawn(_share: usize, run: impl FnOnce() + Send + 'static) -> Option<Handle> {
        let spawner = super::SPAWNER.get()?;
        spawner(Box::new(run)).then_some(())
    }

    /// How long a worker spins for the next region before it sleeps.
    const SPINS: u32 = 1 << 16;

    pub(super) struct Inner {
        shared: Arc<Shared>,
        workers: Vec<Handle>,
        /// One region at a time.
        turn: Mutex<()>,
    }

    struct Shared {
        /// Bumped to start a region (and to shut down).
        epoch: AtomicUsize,
        /// Workers still busy with the current region.
        remaining: AtomicUsize,
        /// The current region; written only while no worker is busy.
        job: UnsafeCell<(usize, Option<Job<'static>>)>,
        shutdown: AtomicBool,
        panicked: AtomicBool,
        sleep: Mutex<usize>,
        wake: Condvar,
    }

    // SAFETY: `job` is written by the caller of `run` only before it bumps `epoch` (release)
    // and while `remaining` is 0, and read by workers only after they see the new epoch
    // (acquire); the `Job` itself is `Sync`.
    unsafe impl Sync for Shared {}
    unsafe impl Send for Shared {}

    impl Inner {
        pub(super) fn start(workers: usize) -> Inner {
            let shared = Arc::new(Shared {
                epoch: AtomicUsize::new(0),
                remaining: AtomicUsize::new(0),
                job: UnsafeCell::new((0, None)),
                shutdown: AtomicBool::new(false),
                panicked: AtomicBool::new(false),
                sleep: Mutex::new(0),
                wake: Condvar::new(),
            });
            // Shares must be 1..=n: the first worker that cannot start ends the list.
            let workers = (1..=workers)
                .map_while(|share| {
                    let shared = Arc::clone(&shared);
                    spawn(share, move || worker(&shared, share))
                })
                .collect();
            Inner {
                shared,
                workers,
                turn: Mutex::new(()),
            }
        }

        pub(super) fn workers(&self) -> usize {
            self.workers.len()
        }

        pub(super) fn run(&self, shares: usize, f: Job<'_>) {
            let _turn = self.turn.lock().unwrap_or_else(|e| e.into_inner());
            let shares = shares.min(self.workers.len() + 1);
            let s = &*self.shared;
            // SAFETY: the borrow outlives the region: `Wait` below blocks (even when `f`
            // panics on this thread) until every worker is done with it.
            let job: Job<'static> = unsafe { std::mem::transmute::<Job<'_>, Job<'static>>(f) };
            // SAFETY: no worker is busy (the last region ended with `remaining == 0`), so
            // none reads the slot now.
            unsafe { *s.job.get() = (shares, Some(job)) };
            s.remaining.store(self.workers.len(), Ordering::Relaxed);
            s.epoch.fetch_add(1, Ordering::Release);
            {
                let sleeping = s.sleep.lock().unwrap_or_else(|e| e.into_inner());
                if *sleeping > 0 {
                    s.wake.notify_all();
                }
            }
            struct Wait<'a>(&'a Shared);
            impl Drop for Wait<'_> {
                fn drop(&mut self) {
                    let mut spins = 0u32;
                    while self.0.remaining.load(Ordering::Acquire) != 0 {
                        spins += 1;
                        if spins < SPINS {
                            std::hint::spin_loop();
                        } else {
                            std::thread::yield_now();
                        }
                    }
                }
            }
            let wait = Wait(s);
            f(0, shares);
            drop(wait);
            if s.panicked.swap(false, Ordering::Relaxed) {
                panic!("a kernel thread panicked");
            }
        }
    }

    impl Drop for Inner {
        fn drop(&mut self) {
            self.shared.shutdown.store(true, Ordering::Relaxed);
            self.shared.epoch.fetch_add(1, Ordering::Release);
            {
                let _sleeping = self.shared.sleep.lock().unwrap_or_else(|e| e.into_inner());
                self.shared.wake.notify_all();
            }
            #[cfg(not(target_family = "wasm"))]
            for w in self.workers.drain(..) {
                let _ = w.join();
            }
        }
    }

    fn worker(s: &Shared, share: usize) {
        let mut seen = 0;
        loop {
            let mut spins = 0u32;
            let mut epoch = s.epoch.load(Ordering::Acquire);
            while epoch == seen && spins < SPINS {
                std::hint::spin_loop();
                spins += 1;
                epoch = s.epoch.load(Ordering::Acquire);
            }
            if epoch == seen {
                let mut sleeping = s.sleep.lock().unwrap_or_else(|e| e.into_inner());
                *sleeping += 1;
                while s.epoch.load(Ordering::Acquire) == seen {
                    sleeping = s.wake.wait(sleeping).unwrap_or_else(|e| e.into_inner());
                }
                *sleeping -= 1;
                epoch = s.epoch.load(Ordering::Acquire);
            }
            seen = epoch;
            if s.shutdown.load(Ordering::Relaxed) {
                return;
            }
            // SAFETY: published before the epoch this thread just acquired.
            let (shares, job) = unsafe { *s.job.get() };
            if let Some(job) = job
                && share < shares
            {
                let ok =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(share, shares)));
                if ok.is_err() {
                    s.panicked.store(true, Ordering::Relaxed);
                }
            }
            s.remaining.fetch_sub(1, Ordering::Release);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn every_share_runs_once_per_region() {
        for threads in [1, 2, 3] {
            let pool = Pool::new(threads);
            for shares in 1..=4 {
                let hits: Vec<AtomicUsize> = (0..4).map(|_| AtomicUsize::new(0)).collect();
                let seen_shares = AtomicUsize::new(0);
                pool.run(shares, &|i, n| {
                    hits[i].fetch_add(1, Ordering::Relaxed);
                    seen_shares.store(n, Ordering::Relaxed);
                });
                // (WebAssembly pools always have one thread.)
                let n = shares.min(pool.threads());
                assert_eq!(seen_shares.load(Ordering::Relaxed), n);
                for (i, h) in hits.iter().enumerate() {
                    assert_eq!(h.load(Ordering::Relaxed), usize::from(i < n), "share {i}");
                }
            }
        }
    }

    // WebAssembly has no threads to call from, and aborts on a panic.
    #[cfg(not(target_family = "wasm"))]
    #[test]
    fn many_short_regions_and_concurrent_callers() {
        use std::sync::Arc;
        let pool = Arc::new(Pool::new(2));
        let total = Arc::new(AtomicUsize::new(0));
        let callers: Vec<_> = (0..3)
            .map(|_| {
                let (pool, total) = (Arc::clone(&pool), Arc::clone(&total));
                std::thread::spawn(move || {
                    for _ in 0..2000 {
                        pool.run(2, &|_, _| {
                            total.fetch_add(1, Ordering::Relaxed);
                        });
                    }
                })
            })
            .collect();
        for c in callers {
            c.join().expect("caller");
        }
        assert_eq!(total.load(Ordering::Relaxed), 3 * 2000 * 2);
    }

    #[test]
    fn chunks_are_handed_out_once_each() {
        for threads in [1, 2, 3] {
            let pool = Pool::new(threads);
            // 20 values in pieces of 3: the last piece has 2.
            for interleaved in [false, true] {
                let mut out = vec![0.0f32; 20];
                let f = |item: usize, c: &mut [f32]| {
                    assert!(c.len() == 3 || (item == 6 && c.len() == 2));
                    for v in c.iter_mut() {
                        *v += item as f32 + 1.0;
                    }
                };
                if interleaved {
                    pool.for_each_chunk_interleaved(&mut out, 3, &f);
                } else {
                    pool.for_each_chunk(&mut out, 3, &f);
                }
                for (i, v) in out.iter().enumerate() {
                    assert_eq!(*v, (i / 3) as f32 + 1.0, "interleaved: {interleaved}");
                }
            }
        }
    }

    #[cfg(not(target_family = "wasm"))]
    #[test]
    fn a_panicking_share_is_reported_to_the_caller() {
        let pool = Pool::new(2);
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            pool.run(2, &|i, _| assert_ne!(i, 1, "boom"));
        }));
        assert!(r.is_err());
        // The pool still works afterwards.
        let hits = AtomicUsize::new(0);
        pool.run(2, &|_, _| {
            hits.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(hits.load(Ordering::Relaxed), 2);
    }
}
