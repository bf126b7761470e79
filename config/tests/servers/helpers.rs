//! Shared test set-up.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use flashgate_config::{Settings, Sources};

/// The settings the binaries would use here: defaults (the local stack) overridden by
/// `FLASHGATE__...` variables when set. Read, never written.
pub fn settings() -> Settings {
    Settings::load(&Sources::from_process(None)).expect("test configuration is valid")
}

/// A name no other test (or test run) uses.
pub fn unique(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .subsec_nanos();
    format!(
        "{prefix}-{}-{nanos}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}
