//! `--detach-keys` (Docker's syntax: `ctrl-p,ctrl-q`, `ctrl-a,x`) and the scanner that finds
//! the sequence in a stdin stream.
//!
//! The scanner holds back the bytes of a partial match; when the next byte does not continue
//! the sequence, the held bytes go through unchanged, so nothing typed is lost or reordered.

use std::fmt;
use std::str::FromStr;

/// Docker's default sequence.
pub const DEFAULT_DETACH_KEYS: &str = "ctrl-p,ctrl-q";

/// Why a `--detach-keys` value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DetachKeysError {
    /// The whole value is empty.
    #[error("invalid detach keys: empty")]
    Empty,
    /// One key is neither a single character nor `ctrl-<key>`.
    #[error(
        "invalid detach keys {value:?}: {key:?} is neither one character nor ctrl-<a-z, @, [, \\, ], ^ or _>"
    )]
    BadKey {
        /// The whole value.
        value: String,
        /// The key refused.
        key: String,
    },
}

/// A parsed detach sequence: the bytes a terminal sends for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DetachKeys {
    text: String,
    bytes: Vec<u8>,
}

impl DetachKeys {
    /// The bytes of the sequence.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// A scanner for this sequence.
    pub fn scanner(&self) -> DetachScanner {
        DetachScanner {
            keys: self.bytes.clone(),
            held: Vec::new(),
        }
    }
}

impl Default for DetachKeys {
    fn default() -> DetachKeys {
        DetachKeys {
            text: DEFAULT_DETACH_KEYS.to_owned(),
            // ctrl-p, ctrl-q
            bytes: vec![0x10, 0x11],
        }
    }
}

/// The byte a terminal sends for `ctrl-<c>` (as Docker's `term.ToBytes` maps it).
fn ctrl_byte(c: char) -> Option<u8> {
    match c {
        'a'..='z' => Some(c as u8 - b'a' + 1),
        '@' => Some(0),
        '[' => Some(27),
        '\\' => Some(28),
        ']' => Some(29),
        '^' => Some(30),
        '_' => Some(31),
        _ => None,
    }
}

impl FromStr for DetachKeys {
    type Err = DetachKeysError;

    fn from_str(s: &str) -> Result<DetachKeys, DetachKeysError> {
        if s.is_empty() {
            return Err(DetachKeysError::Empty);
        }
        let bad = |key: &str| DetachKeysError::BadKey {
            value: s.to_owned(),
            key: key.to_owned(),
        };
        let mut bytes = Vec::new();
        for key in s.split(',') {
            let lower = key.to_ascii_lowercase();
            let byte = if let Some(rest) = lower.strip_prefix("ctrl-") {
                let mut chars = rest.chars();
                match (chars.next(), chars.next()) {
                    (Some(c), None) => ctrl_byte(c).ok_or_else(|| bad(key))?,
                    _ => return Err(bad(key)),
                }
            } else {
                let mut chars = key.chars();
                match (chars.next(), chars.next()) {
                    (Some(c), None) if c.is_ascii() => c as u8,
                    _ => return Err(bad(key)),
                }
            };
            bytes.push(byte);
        }
        Ok(DetachKeys {
            text: s.to_owned(),
            bytes,
        })
    }
}

impl fmt::Display for DetachKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// What one chunk of input came to.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Scanned {
    /// The bytes to forward now.
    pub forward: Vec<u8>,
    /// The whole sequence was read: forward `forward`, then detach.
    pub detach: bool,
}

/// Finds a detach sequence in a byte stream fed in chunks of any size.
#[derive(Debug, Clone)]
pub struct DetachScanner {
    keys: Vec<u8>,
    /// The prefix of `keys` read so far and not yet forwarded.
    held: Vec<u8>,
}

impl DetachScanner {
    /// Scans `input`. Bytes after a complete sequence are dropped (the session is over).
    pub fn feed(&mut self, input: &[u8]) -> Scanned {
        let mut out = Scanned::default();
        for &b in input {
            self.held.push(b);
            // Forward from the front until what is held is a prefix of the sequence again
            // (empty at worst), so a sequence that starts inside a failed match is found.
            while !self.keys.starts_with(&self.held) {
                out.forward.push(self.held.remove(0));
            }
            if !self.keys.is_empty() && self.held.len() == self.keys.len() {
                self.held.clear();
                out.detach = true;
                return out;
            }
        }
        out
    }

    /// The bytes of a partial match, forwarded when the input ends.
    pub fn finish(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.held)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn keys(s: &str) -> DetachKeys {
        s.parse().unwrap()
    }

    #[test]
    fn dockers_syntax_parses_to_terminal_bytes() {
        assert_eq!(keys("ctrl-p,ctrl-q").bytes(), [0x10, 0x11]);
        assert_eq!(
            DetachKeys::default().bytes(),
            keys(DEFAULT_DETACH_KEYS).bytes()
        );
        assert_eq!(keys("ctrl-a,x").bytes(), [1, b'x']);
        assert_eq!(keys("CTRL-Z,ctrl-@,ctrl-[").bytes(), [26, 0, 27]);
        assert_eq!(
            keys("ctrl-\\,ctrl-],ctrl-^,ctrl-_").bytes(),
            [28, 29, 30, 31]
        );
        assert!(
            "a,,".parse::<DetachKeys>().is_err(),
            "an empty key is refused"
        );
    }

    #[test]
    fn bad_keys_are_refused_naming_the_key() {
        assert_eq!(
            "".parse::<DetachKeys>().unwrap_err(),
            DetachKeysError::Empty
        );
        let e = "ctrl-p,ctrl-1".parse::<DetachKeys>().unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid detach keys \"ctrl-p,ctrl-1\": \"ctrl-1\" is neither one character nor ctrl-<a-z, @, [, \\, ], ^ or _>"
        );
        assert!("ab".parse::<DetachKeys>().is_err());
        assert!("ctrl-".parse::<DetachKeys>().is_err());
        assert!("é".parse::<DetachKeys>().is_err());
    }

    #[test]
    fn the_sequence_detaches_and_what_came_before_goes_through() {
        let mut s = DetachKeys::default().scanner();
        let r = s.feed(b"hello\x10\x11after");
        assert_eq!(r.forward, b"hello");
        assert!(r.detach);
    }

    #[test]
    fn a_partial_match_passes_through_when_the_next_byte_differs() {
        let mut s = DetachKeys::default().scanner();
        let r = s.feed(b"a\x10");
        assert_eq!(r.forward, b"a", "the ctrl-p is held");
        assert!(!r.detach);
        let r = s.feed(b"b");
        assert_eq!(r.forward, b"\x10b");
        assert!(!r.detach);
        // ctrl-p ctrl-p ctrl-q: the first ctrl-p goes through, the pair detaches.
        let r = s.feed(b"\x10\x10\x11");
        assert_eq!(r.forward, b"\x10");
        assert!(r.detach);
    }

    #[test]
    fn a_sequence_split_across_reads_is_found() {
        let mut s = keys("ctrl-a,x").scanner();
        assert_eq!(s.feed(b"\x01").forward, b"");
        let r = s.feed(b"x");
        assert!(r.detach);
        assert!(r.forward.is_empty());
    }

    #[test]
    fn a_partial_match_at_the_end_is_forwarded_by_finish() {
        let mut s = DetachKeys::default().scanner();
        assert_eq!(s.feed(b"z\x10").forward, b"z");
        assert_eq!(s.finish(), b"\x10");
        assert!(s.finish().is_empty());
    }

    #[test]
    fn overlapping_sequences_are_found() {
        // a,a,b inside "aaab": the first a goes through.
        let mut s = keys("a,a,b").scanner();
        let r = s.feed(b"aaab");
        assert_eq!(r.forward, b"a");
        assert!(r.detach);
    }

    proptest! {
        /// Whatever the chunking, input without the sequence comes out whole and in order.
        #[test]
        fn input_without_the_sequence_is_unchanged(
            data in proptest::collection::vec(prop_oneof![Just(0x10u8), Just(b'a'), Just(0x11u8)], 0..64),
            cut in 1usize..8,
        ) {
            // Break every ctrl-p ctrl-q pair, keeping the near misses.
            let mut data = data;
            for i in 1..data.len() {
                if data[i - 1] == 0x10 && data[i] == 0x11 {
                    data[i] = b'a';
                }
            }
            let mut s = DetachKeys::default().scanner();
            let mut out = Vec::new();
            for chunk in data.chunks(cut) {
                let r = s.feed(chunk);
                prop_assert!(!r.detach);
                out.extend(r.forward);
            }
            out.extend(s.finish());
            prop_assert_eq!(out, data);
        }

        /// With the sequence inside, exactly what precedes its first occurrence comes out.
        #[test]
        fn input_up_to_the_sequence_comes_out(
            data in proptest::collection::vec(prop_oneof![Just(0x10u8), Just(b'a'), Just(0x11u8)], 0..64),
            cut in 1usize..8,
        ) {
            let seq = [0x10u8, 0x11];
            let Some(at) = data.windows(2).position(|w| w == seq) else {
                return Ok(());
            };
            let mut s = DetachKeys::default().scanner();
            let mut out = Vec::new();
            let mut detached = false;
            for chunk in data.chunks(cut) {
                let r = s.feed(chunk);
                out.extend(r.forward);
                if r.detach {
                    detached = true;
                    break;
                }
            }
            prop_assert!(detached);
            prop_assert_eq!(&out[..], &data[..at]);
        }
    }
}
