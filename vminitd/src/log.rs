//! Logging to the guest console (fd 2 is /dev/console once boot has reopened it).
//!
//! A few macros instead of a logging framework: the binary ships in every VM and the console
//! is the only sink. The level comes from the kernel command line word `vminitd_log=LEVEL`
//! (error, warn, info, debug), which the kernel hands to init as an environment variable.

use std::sync::atomic::{AtomicU8, Ordering};

static LEVEL: AtomicU8 = AtomicU8::new(2);

/// Sets the level from `vminitd_log` in the environment.
pub fn init_from_env() {
    let lvl = match std::env::var("vminitd_log").unwrap_or_default().as_str() {
        "error" => 0,
        "warn" => 1,
        "debug" => 3,
        _ => 2,
    };
    LEVEL.store(lvl, Ordering::Relaxed);
}

/// Whether messages of `level` (0 error .. 3 debug) are printed.
pub fn enabled(level: u8) -> bool {
    level <= LEVEL.load(Ordering::Relaxed)
}

/// Prints one line to the console.
#[macro_export]
macro_rules! log {
    ($lvl:expr, $tag:expr, $($arg:tt)*) => {
        if $crate::log::enabled($lvl) {
            eprintln!("vminitd {}: {}", $tag, format_args!($($arg)*));
        }
    };
}
#[macro_export]
macro_rules! error { ($($arg:tt)*) => { $crate::log!(0, "error", $($arg)*) }; }
#[macro_export]
macro_rules! warn { ($($arg:tt)*) => { $crate::log!(1, "warn", $($arg)*) }; }
#[macro_export]
macro_rules! info { ($($arg:tt)*) => { $crate::log!(2, "info", $($arg)*) }; }
#[macro_export]
macro_rules! debug { ($($arg:tt)*) => { $crate::log!(3, "debug", $($arg)*) }; }
