//! What every shuttle test file shares: replay settings from the
//! environment, the runner thread, and exploration under both schedulers.
//!
//! `SEED` replays one seed; `MAX_ITERATIONS` sets schedules per scheduler.

use std::sync::mpsc;
use std::sync::OnceLock;

use shuttle::scheduler::{PctScheduler, RandomScheduler};

/// `name`'s value from the environment, parsed; a bad value panics naming it.
pub fn env_u64(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok()?;
    Some(
        value
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("{name}={value:?}: {e}")),
    )
}

/// Shuttle settings for the crate's tests.
pub fn shuttle_config() -> shuttle::Config {
    let mut config = shuttle::Config::new();
    // The library's Acquire/Release orderings are deliberate.
    config.silence_warnings = true;
    config.stack_size = 0x40000;
    config
}

/// Runs every exploration on one long-lived OS thread, one at a time.
///
/// The structures retire memory through crossbeam-epoch, whose deferred
/// frees touch shuttle atomics; they must run inside a shuttle execution.
/// A test thread that exits flushes its epoch state and may run them
/// outside one, so all executions happen on a thread that never exits.
pub fn on_shuttle_thread(job: impl FnOnce() + Send + 'static) {
    type Outcome = std::thread::Result<()>;
    type Job = Box<dyn FnOnce() -> Outcome + Send>;
    type Jobs = std::sync::Mutex<mpsc::Sender<(Job, mpsc::Sender<Outcome>)>>;
    static JOBS: OnceLock<Jobs> = OnceLock::new();
    let jobs = JOBS.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<(Job, mpsc::Sender<Outcome>)>();
        std::thread::Builder::new()
            .name("shuttle-runner".into())
            .spawn(move || {
                for (job, reply) in rx {
                    let _ = reply.send(job());
                }
            })
            .unwrap();
        std::sync::Mutex::new(tx)
    });
    let (reply, result) = mpsc::channel();
    let job: Job = Box::new(move || std::panic::catch_unwind(std::panic::AssertUnwindSafe(job)));
    jobs.lock()
        .unwrap_or_else(|e| e.into_inner())
        .send((job, reply))
        .unwrap();
    if let Err(panic) = result.recv().expect("the shuttle runner thread died") {
        std::panic::resume_unwind(panic);
    }
}

/// Explores the test `f` under the random scheduler and under PCT (depth
/// `pct_depth`), `default_iterations` schedules each unless
/// `MAX_ITERATIONS` says otherwise; the seed is printed for replay.
pub fn explore(
    name: &'static str,
    default_iterations: usize,
    pct_depth: usize,
    f: impl Fn() + Send + Sync + Copy + 'static,
) {
    let iterations = env_u64("MAX_ITERATIONS").map_or(default_iterations, |n| n as usize);
    let seed = env_u64("SEED").unwrap_or_else(|| {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write(name.as_bytes());
        h.finish()
    });
    eprintln!("shuttle {name}: seed {seed} (replay: SEED={seed} MAX_ITERATIONS={iterations})");
    on_shuttle_thread(move || {
        let runs = shuttle::Runner::new(
            RandomScheduler::new_from_seed(seed, iterations),
            shuttle_config(),
        )
        .run(f);
        eprintln!("shuttle {name}: random scheduler: {runs} schedules passed");
        assert_eq!(runs, iterations);
        let runs = shuttle::Runner::new(
            PctScheduler::new_from_seed(seed, pct_depth, iterations),
            shuttle_config(),
        )
        .run(f);
        eprintln!("shuttle {name}: PCT scheduler (depth {pct_depth}): {runs} schedules passed");
        assert_eq!(runs, iterations);
    });
}
