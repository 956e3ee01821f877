//! Signals as users name them: `TERM`, `SIGTERM`, `sigkill`, `9`, `SIGRTMIN+3`.
//!
//! Numbers are Linux's: every container is a Linux guest, whatever the host runs (macOS
//! numbers `SIGUSR1` 30, Linux 10), so the table is ours and no host `libc` constant is used.

use std::fmt;
use std::str::FromStr;

/// Why a signal was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignalError {
    /// Neither a known name nor a number from 1 to 64.
    #[error(
        "invalid signal {0:?}: expected a name such as TERM or SIGKILL, or a number from 1 to 64"
    )]
    Unknown(String),
}

/// A Linux signal number, 1 to 64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Signal(u8);

const NAMES: [(&str, u8); 32] = [
    ("HUP", 1),
    ("INT", 2),
    ("QUIT", 3),
    ("ILL", 4),
    ("TRAP", 5),
    ("ABRT", 6),
    ("BUS", 7),
    ("FPE", 8),
    ("KILL", 9),
    ("USR1", 10),
    ("SEGV", 11),
    ("USR2", 12),
    ("PIPE", 13),
    ("ALRM", 14),
    ("TERM", 15),
    ("STKFLT", 16),
    ("CHLD", 17),
    ("CONT", 18),
    ("STOP", 19),
    ("TSTP", 20),
    ("TTIN", 21),
    ("TTOU", 22),
    ("URG", 23),
    ("XCPU", 24),
    ("XFSZ", 25),
    ("VTALRM", 26),
    ("PROF", 27),
    ("WINCH", 28),
    ("IO", 29),
    ("PWR", 30),
    ("SYS", 31),
    // Aliases, found by parse only: the first name of a number is its display name.
    ("IOT", 6),
];
const ALIASES: [(&str, u8); 2] = [("POLL", 29), ("CLD", 17)];
const RTMIN: u8 = 34;
const RTMAX: u8 = 64;

impl Signal {
    /// SIGHUP.
    pub const HUP: Signal = Signal(1);
    /// SIGINT.
    pub const INT: Signal = Signal(2);
    /// SIGQUIT.
    pub const QUIT: Signal = Signal(3);
    /// SIGKILL.
    pub const KILL: Signal = Signal(9);
    /// SIGUSR1.
    pub const USR1: Signal = Signal(10);
    /// SIGUSR2.
    pub const USR2: Signal = Signal(12);
    /// SIGTERM.
    pub const TERM: Signal = Signal(15);
    /// SIGWINCH.
    pub const WINCH: Signal = Signal(28);

    /// The signal numbered `n`, if 1 to 64.
    pub fn from_number(n: i32) -> Option<Signal> {
        u8::try_from(n)
            .ok()
            .filter(|n| (1..=RTMAX).contains(n))
            .map(Signal)
    }

    /// The Linux signal number.
    pub fn number(self) -> i32 {
        i32::from(self.0)
    }

    /// The name without `SIG`: `TERM`, `RTMIN+3`; numbers 32 and 33 (used by libc
    /// internally) have none and show as their number.
    pub fn name(self) -> Option<String> {
        if let Some((name, _)) = NAMES.iter().find(|(_, n)| *n == self.0) {
            return Some((*name).to_owned());
        }
        match self.0 {
            RTMIN => Some("RTMIN".into()),
            RTMAX => Some("RTMAX".into()),
            n if n > RTMIN && n <= RTMIN + 15 => Some(format!("RTMIN+{}", n - RTMIN)),
            n if n > RTMIN + 15 && n < RTMAX => Some(format!("RTMAX-{}", RTMAX - n)),
            _ => None,
        }
    }
}

impl FromStr for Signal {
    type Err = SignalError;

    fn from_str(text: &str) -> Result<Signal, SignalError> {
        let unknown = || SignalError::Unknown(text.to_owned());
        if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
            return text
                .parse::<i32>()
                .ok()
                .and_then(Signal::from_number)
                .ok_or_else(unknown);
        }
        let upper = text.to_ascii_uppercase();
        let name = upper.strip_prefix("SIG").unwrap_or(&upper);
        if let Some((_, n)) = NAMES.iter().chain(ALIASES.iter()).find(|(x, _)| *x == name) {
            return Ok(Signal(*n));
        }
        let offset = |s: &str| s.parse::<u8>().ok().filter(|_| !s.starts_with('+'));
        let n = match name {
            "RTMIN" => Some(RTMIN),
            "RTMAX" => Some(RTMAX),
            _ => {
                if let Some(k) = name.strip_prefix("RTMIN+").and_then(offset) {
                    RTMIN.checked_add(k).filter(|n| *n <= RTMAX)
                } else if let Some(k) = name.strip_prefix("RTMAX-").and_then(offset) {
                    RTMAX.checked_sub(k).filter(|n| *n >= RTMIN)
                } else {
                    None
                }
            }
        };
        n.map(Signal).ok_or_else(unknown)
    }
}

impl fmt::Display for Signal {
    /// `SIGTERM`, or the bare number when the signal has no name.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => write!(f, "SIG{name}"),
            None => write!(f, "{}", self.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn names_with_and_without_sig_and_numbers() {
        for text in ["TERM", "SIGTERM", "sigterm", "term", "15"] {
            assert_eq!(text.parse::<Signal>().unwrap(), Signal::TERM, "{text}");
        }
        assert_eq!("KILL".parse::<Signal>().unwrap().number(), 9);
        assert_eq!("SIGUSR1".parse::<Signal>().unwrap().number(), 10);
        assert_eq!("SIGIOT".parse::<Signal>().unwrap().to_string(), "SIGABRT");
        assert_eq!("SIGRTMIN+3".parse::<Signal>().unwrap().number(), 37);
        assert_eq!("RTMAX-1".parse::<Signal>().unwrap().number(), 63);
        assert_eq!(Signal::WINCH.to_string(), "SIGWINCH");
        assert_eq!(Signal::from_number(32).unwrap().to_string(), "32");
    }

    #[test]
    fn refuses_unknown_names_and_numbers() {
        for bad in [
            "", "0", "65", "SIGFOO", "RTMIN+31", "RTMIN+-1", "SIG", "-9", "9x",
        ] {
            assert_eq!(
                bad.parse::<Signal>().unwrap_err().to_string(),
                format!(
                    "invalid signal {bad:?}: expected a name such as TERM or SIGKILL, or a number from 1 to 64"
                ),
            );
        }
    }

    proptest! {
        #[test]
        fn display_round_trips(n in 1i32..=64) {
            let s = Signal::from_number(n).unwrap();
            prop_assert_eq!(s.to_string().parse::<Signal>().unwrap(), s);
        }
    }
}
