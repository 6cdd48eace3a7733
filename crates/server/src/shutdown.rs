//! SIGINT and SIGTERM ask the server to stop.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::Context;
use signal_hook::consts::{SIGINT, SIGTERM};

/// Status of a process ended by a second signal while it was stopping.
const FORCED_EXIT: i32 = 1;

/// Installs the handlers and returns the flag they set: the workers poll it
/// and stop, and the server exits 0 after its summary. A second signal,
/// once the flag is set, ends the process at once, in case stopping hangs.
pub(crate) fn on_signals() -> anyhow::Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [SIGINT, SIGTERM] {
        // The forced exit must be registered first: on the first signal it
        // runs while the flag is still false and does nothing.
        signal_hook::flag::register_conditional_shutdown(signal, FORCED_EXIT, Arc::clone(&stop))
            .and_then(|_| signal_hook::flag::register(signal, Arc::clone(&stop)))
            .with_context(|| format!("cannot install a handler for signal {signal}"))?;
    }
    Ok(stop)
}
