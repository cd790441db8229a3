//! The config-store read harness shared by `benches/config.rs` and the
//! contention report: N reader threads load a realistic configuration while,
//! optionally, one writer commits about 1,000 times a second.
//!
//! Implementations, all reading the same `AppConfig`:
//! - `unlocked load()`: `ConfigStore::load`, a `Snapshot` per read;
//! - `unlocked reader()`: a per-thread `Reader` (cached);
//! - `arc-swap load`: raw `ArcSwap::load`, the peer `load()` is built on;
//! - `arc-swap Cache`: raw `arc_swap::Cache`, the peer `reader()` wraps;
//! - `RwLock<Arc<T>>`: a read lock and an `Arc` clone per read;
//! - `seeds RwLock<T> + deep clone`: the seeds' design, a read lock and a
//!   deep copy of the whole configuration per read.

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier, RwLock};
use std::thread;
use std::time::{Duration, Instant};

use arc_swap::{ArcSwap, Cache};
use unlocked::config::ConfigStore;

/// A configuration of the size a service keeps: strings, a list, a map.
#[derive(Clone, Debug)]
pub struct AppConfig {
    pub name: String,
    pub port: u16,
    pub hosts: Vec<String>,
    pub limits: HashMap<String, u64>,
}

impl AppConfig {
    pub fn sample() -> Self {
        AppConfig {
            name: "checkout-service".into(),
            port: 8080,
            hosts: (0..8).map(|i| format!("db-{i}.internal:5432")).collect(),
            limits: (0..8).map(|i| (format!("limit_{i}"), i * 100)).collect(),
        }
    }
}

/// One implementation under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Impl {
    Load,
    Reader,
    ArcSwapLoad,
    ArcSwapCache,
    RwLockArc,
    SeedsDeepClone,
}

impl Impl {
    pub const ALL: [Impl; 6] = [
        Impl::Load,
        Impl::Reader,
        Impl::ArcSwapLoad,
        Impl::ArcSwapCache,
        Impl::RwLockArc,
        Impl::SeedsDeepClone,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Impl::Load => "unlocked load()",
            Impl::Reader => "unlocked reader()",
            Impl::ArcSwapLoad => "arc-swap load",
            Impl::ArcSwapCache => "arc-swap Cache",
            Impl::RwLockArc => "RwLock<Arc<T>>",
            Impl::SeedsDeepClone => "seeds RwLock<T> + deep clone",
        }
    }

    /// A short id for criterion and file names.
    pub fn id(self) -> &'static str {
        match self {
            Impl::Load => "load",
            Impl::Reader => "reader",
            Impl::ArcSwapLoad => "arcswap-load",
            Impl::ArcSwapCache => "arcswap-cache",
            Impl::RwLockArc => "rwlock-arc",
            Impl::SeedsDeepClone => "seeds-rwlock-clone",
        }
    }
}

/// The shared state of one implementation.
enum Target {
    Store(ConfigStore<AppConfig>),
    Swap(Arc<ArcSwap<AppConfig>>),
    RwArc(RwLock<Arc<AppConfig>>),
    Seeds(RwLock<AppConfig>),
}

impl Target {
    fn new(which: Impl) -> Self {
        let c = AppConfig::sample();
        match which {
            Impl::Load | Impl::Reader => Target::Store(ConfigStore::new(c)),
            Impl::ArcSwapLoad | Impl::ArcSwapCache => {
                Target::Swap(Arc::new(ArcSwap::from_pointee(c)))
            }
            Impl::RwLockArc => Target::RwArc(RwLock::new(Arc::new(c))),
            Impl::SeedsDeepClone => Target::Seeds(RwLock::new(c)),
        }
    }

    /// One commit: a new port.
    fn write(&self, n: u64) {
        let port = 1024 + (n % 60_000) as u16;
        match self {
            Target::Store(s) => {
                s.update(|c| -> Result<(), ()> {
                    c.port = port;
                    Ok(())
                })
                .unwrap();
            }
            Target::Swap(s) => {
                let mut c = AppConfig::clone(&s.load());
                c.port = port;
                s.store(Arc::new(c));
            }
            Target::RwArc(l) => {
                let mut c = AppConfig::clone(&l.read().unwrap());
                c.port = port;
                *l.write().unwrap() = Arc::new(c);
            }
            Target::Seeds(l) => l.write().unwrap().port = port,
        }
    }

    /// `ops` reads; returns a checksum so nothing is optimised away.
    fn read(&self, which: Impl, ops: u64) -> u64 {
        let mut sum = 0u64;
        match (self, which) {
            (Target::Store(s), Impl::Load) => {
                for _ in 0..ops {
                    let c = s.load();
                    sum = sum.wrapping_add(u64::from(c.port) + c.hosts.len() as u64);
                }
            }
            (Target::Store(s), _) => {
                let mut r = s.reader();
                for _ in 0..ops {
                    let c = r.load();
                    sum = sum.wrapping_add(u64::from(c.port) + c.hosts.len() as u64);
                }
            }
            (Target::Swap(s), Impl::ArcSwapLoad) => {
                for _ in 0..ops {
                    let c = s.load();
                    sum = sum.wrapping_add(u64::from(c.port) + c.hosts.len() as u64);
                }
            }
            (Target::Swap(s), _) => {
                let mut cache = Cache::new(Arc::clone(s));
                for _ in 0..ops {
                    let c = cache.load();
                    sum = sum.wrapping_add(u64::from(c.port) + c.hosts.len() as u64);
                }
            }
            (Target::RwArc(l), _) => {
                for _ in 0..ops {
                    let c = Arc::clone(&l.read().unwrap());
                    sum = sum.wrapping_add(u64::from(c.port) + c.hosts.len() as u64);
                }
            }
            (Target::Seeds(l), _) => {
                for _ in 0..ops {
                    let c = l.read().unwrap().clone();
                    sum = sum.wrapping_add(u64::from(c.port) + c.hosts.len() as u64);
                }
            }
        }
        black_box(sum)
    }
}

/// One measured run.
#[derive(Clone, Copy, Debug)]
pub struct RunResult {
    /// From the first reader's start to the last reader's end.
    pub elapsed: Duration,
    /// Commits the writer made during the run.
    pub commits: u64,
}

/// `readers` threads each do `ops` reads of `which`; with `writer`, one more
/// thread commits every millisecond until they finish.
pub fn run(which: Impl, readers: usize, ops: u64, writer: bool) -> RunResult {
    let target = Target::new(which);
    let start = Barrier::new(readers + 1);
    let stop = AtomicBool::new(false);
    thread::scope(|s| {
        let w = writer.then(|| {
            s.spawn(|| {
                let mut n = 0;
                let mut next = Instant::now();
                while !stop.load(Ordering::Relaxed) {
                    target.write(n);
                    n += 1;
                    next += Duration::from_millis(1);
                    if let Some(wait) = next.checked_duration_since(Instant::now()) {
                        thread::sleep(wait);
                    }
                }
                n
            })
        });
        let handles: Vec<_> = (0..readers)
            .map(|_| {
                s.spawn(|| {
                    start.wait();
                    let t0 = Instant::now();
                    target.read(which, ops);
                    (t0, Instant::now())
                })
            })
            .collect();
        start.wait();
        let spans: Vec<(Instant, Instant)> =
            handles.into_iter().map(|h| h.join().unwrap()).collect();
        stop.store(true, Ordering::Relaxed);
        let commits = w.map_or(0, |w| w.join().unwrap());
        let first = spans.iter().map(|s| s.0).min().unwrap();
        let last = spans.iter().map(|s| s.1).max().unwrap();
        RunResult {
            elapsed: last - first,
            commits,
        }
    })
}

/// Reads per reader that take about `target` for `which` (from a short
/// calibration run).
pub fn calibrate(which: Impl, target: Duration) -> u64 {
    let probe = 20_000;
    let took = run(which, 1, probe, false)
        .elapsed
        .max(Duration::from_micros(1));
    ((probe as f64 * target.as_secs_f64() / took.as_secs_f64()) as u64).max(1_000)
}
