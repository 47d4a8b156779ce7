//! Where batch work runs: a rayon pool sized once from `INDEXER_NUM_THREADS`
//! (default: all cores), entered with the GIL released.
//!
//! The pool is rebuilt in a forked child (its worker threads do not survive
//! `fork`), so a dataloader that forks after using the extension keeps working.

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

fn pool() -> Arc<ThreadPool> {
    let pid = std::process::id();
    let mut guard = POOL.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some((owner, pool)) = guard.as_ref() {
        if *owner == pid {
            return pool.clone();
        }
    }
    let pool = Arc::new(
        rayon::ThreadPoolBuilder::new()
            .num_threads(configured_threads())
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
    py.detach(|| catch_unwind(AssertUnwindSafe(|| pool().install(work)))).map_err(|payload| {
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

/// Number of worker threads batch calls use (set by `INDEXER_NUM_THREADS`).
#[pyfunction]
pub fn num_threads() -> usize {
    pool().current_num_threads()
}
