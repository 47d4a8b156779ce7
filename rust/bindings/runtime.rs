//! Where batch work runs, always with the GIL released. `INDEXER_NUM_THREADS`
//! (default: all cores) is read once:
//! - above 1, calls share one rayon pool of that many workers; the pool is
//!   rebuilt in a forked child (worker threads do not survive `fork`), so a
//!   dataloader that forks after using the extension keeps working;
//! - at 1, each call runs on its calling thread (a per-thread rayon pool of
//!   that thread alone), so calls from several Python threads run in
//!   parallel instead of queueing on one shared worker.

use crate::errors::DataError;
use pyo3::prelude::*;
use rayon::ThreadPool;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex};

const ENV_THREADS: &str = "INDEXER_NUM_THREADS";
const MAX_THREADS: usize = 256;

static POOL: Mutex<Option<(u32, Arc<ThreadPool>)>> = Mutex::new(None);

fn configured_threads() -> usize {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    std::env::var(ENV_THREADS)
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or(cores)
        .clamp(1, MAX_THREADS)
}

thread_local! {
    /// The calling thread as a one-thread pool: `install` runs inline on it.
    static INLINE: ThreadPool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .use_current_thread()
        .build()
        .expect("cannot make the calling thread a rayon pool");
}

fn threads() -> usize {
    static THREADS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *THREADS.get_or_init(configured_threads)
}

fn shared_pool() -> Arc<ThreadPool> {
    let pid = std::process::id();
    let mut guard = POOL.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some((owner, pool)) = guard.as_ref() {
        if *owner == pid {
            return pool.clone();
        }
    }
    let pool = Arc::new(
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads())
            .thread_name(|i| format!("indexer-native-{i}"))
            .build()
            .expect("cannot start the rayon thread pool"),
    );
    *guard = Some((pid, pool.clone()));
    pool
}

/// Runs `work` on the extension's pool with the GIL released. A panic (a bug:
/// the core returns errors for bad input) becomes a `DataError` rather than
/// PyO3's `PanicException`, which derives from `BaseException` and would
/// escape ordinary `except Exception` handlers in a server.
pub fn detach<T, F>(py: Python<'_>, work: F) -> PyResult<T>
where
    T: Send,
    F: FnOnce() -> T + Send,
{
    let run = || {
        if threads() == 1 {
            INLINE.with(|pool| pool.install(work))
        } else {
            shared_pool().install(work)
        }
    };
    py.detach(|| catch_unwind(AssertUnwindSafe(run))).map_err(|payload| {
        let msg = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        DataError::new_err(format!("internal error in the native data core (please report it): {msg}"))
    })
}

/// [`detach`] for work that returns a core result: both failures become Python exceptions.
pub fn detach_core<T, F>(py: Python<'_>, work: F) -> PyResult<T>
where
    T: Send,
    F: FnOnce() -> datacore::Result<T> + Send,
{
    detach(py, work)?.map_err(crate::errors::to_py)
}

/// Number of threads one batch call uses (set by `INDEXER_NUM_THREADS`).
#[pyfunction]
pub fn num_threads() -> usize {
    threads()
}
