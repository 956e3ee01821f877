//! PAX extended header records (POSIX.1-2001 `x` headers), parsed by their length prefix.
//!
//! Each record is `<len> <key>=<value>\n`, where `len` (decimal) counts the whole record,
//! its own digits and the newline included. The value is bytes and may hold newlines (a
//! binary `SCHILY.xattr.security.capability`), so records are cut by their length, never
//! at newlines; the tar crate's own reader splits at newlines and refuses such a record
//! (or, given a crafted value, finds records that are not there). Our own code because the
//! parser the job needs is these forty lines.

/// Why a PAX header was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PaxError {
    #[error("a PAX record has no length")]
    NoLength,
    #[error("a PAX record's length {0} is impossible")]
    BadLength(String),
    #[error("a PAX record runs past the end of its header")]
    Truncated,
    #[error("a PAX record does not end with a newline")]
    NoNewline,
    #[error("a PAX record has no `=`")]
    NoEquals,
    #[error("a PAX record has an empty key")]
    EmptyKey,
}

/// One record: its key and value as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaxRecord<'a> {
    pub key: &'a [u8],
    pub value: &'a [u8],
}

/// Every record of the header data `data`, in order. Trailing NUL padding (some writers
/// pad the data block) is allowed after the last record.
pub fn records(data: &[u8]) -> Result<Vec<PaxRecord<'_>>, PaxError> {
    let mut out = Vec::new();
    let mut rest = data;
    while !rest.is_empty() {
        if rest.iter().all(|b| *b == 0) {
            break;
        }
        let space = rest
            .iter()
            .take(21)
            .position(|b| *b == b' ')
            .ok_or(PaxError::NoLength)?;
        let digits = &rest[..space];
        if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) || digits[0] == b'0' {
            return Err(PaxError::BadLength(
                String::from_utf8_lossy(digits).into_owned(),
            ));
        }
        let len: usize = std::str::from_utf8(digits)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| PaxError::BadLength(String::from_utf8_lossy(digits).into_owned()))?;
        // The shortest record after the length: " k=\n".
        if len < space + 4 {
            return Err(PaxError::BadLength(len.to_string()));
        }
        if len > rest.len() {
            return Err(PaxError::Truncated);
        }
        let record = &rest[..len];
        if record[len - 1] != b'\n' {
            return Err(PaxError::NoNewline);
        }
        let body = &record[space + 1..len - 1];
        let eq = body
            .iter()
            .position(|b| *b == b'=')
            .ok_or(PaxError::NoEquals)?;
        if eq == 0 {
            return Err(PaxError::EmptyKey);
        }
        out.push(PaxRecord {
            key: &body[..eq],
            value: &body[eq + 1..],
        });
        rest = &rest[len..];
    }
    Ok(out)
}

/// The records a newline-splitting reader (the tar crate's) would find in `data`: the
/// well-formed lines. A caller compares them with [`records`] to refuse a header that two
/// readers would understand differently.
pub fn naive_records(data: &[u8]) -> Vec<PaxRecord<'_>> {
    let mut out = Vec::new();
    let mut lines = data.split(|b| *b == b'\n').peekable();
    while let Some(line) = lines.next() {
        if lines.peek().is_none() {
            break; // what follows the last newline is no record
        }
        let Some(space) = line.iter().position(|b| *b == b' ') else {
            continue;
        };
        let len = std::str::from_utf8(&line[..space])
            .ok()
            .and_then(|s| s.parse::<usize>().ok());
        if len != Some(line.len() + 1) {
            continue;
        }
        let body = &line[space + 1..];
        if let Some(eq) = body.iter().position(|b| *b == b'=') {
            out.push(PaxRecord {
                key: &body[..eq],
                value: &body[eq + 1..],
            });
        }
    }
    out
}

/// A record of `key` and `value`, its length computed (for tests and writers).
pub fn record(key: &[u8], value: &[u8]) -> Vec<u8> {
    let body = key.len() + value.len() + 3; // ' ', '=', '\n'
    let mut len = body + 1;
    while len != body + len.to_string().len() {
        len = body + len.to_string().len();
    }
    let mut r = format!("{len} ").into_bytes();
    r.extend_from_slice(key);
    r.push(b'=');
    r.extend_from_slice(value);
    r.push(b'\n');
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn pax_records_count_their_own_length() {
        assert_eq!(record(b"k", b"v"), b"6 k=v\n");
        // 10 bytes + 1 digit = 11 needs two digits: the length grows to 12.
        assert_eq!(record(b"key", b"vvvv"), b"12 key=vvvv\n");
        let long = vec![b'x'; 200];
        let r = record(b"SCHILY.xattr.user.a", &long);
        let (len, _) = std::str::from_utf8(&r[..4])
            .unwrap()
            .split_once(' ')
            .unwrap();
        assert_eq!(len.parse::<usize>().unwrap(), r.len());
    }

    #[test]
    fn binary_values_with_newlines_are_one_record() {
        let cap = b"\x01\x00\x00\x02\n\x20\x00\x00\n\x00\x00\x00\x00";
        let mut data = record(b"SCHILY.xattr.security.capability", cap);
        data.extend(record(b"path", b"usr/bin/ping"));
        let r = records(&data).unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].key, b"SCHILY.xattr.security.capability");
        assert_eq!(r[0].value, cap);
        assert_eq!(r[1].key, b"path");
        assert_eq!(r[1].value, b"usr/bin/ping");
    }

    #[test]
    fn hostile_headers_are_refused() {
        let cases: &[(&[u8], PaxError)] = &[
            (b"9999 path=a\n", PaxError::Truncated),
            (b"3 path=a\n", PaxError::BadLength("3".into())),
            (b"5 path=a\n", PaxError::NoNewline),
            (b"0 x=\n", PaxError::BadLength("0".into())),
            (b"012 path=ab\n", PaxError::BadLength("012".into())),
            (b"-3 a=b\n", PaxError::BadLength("-3".into())),
            (b"11 path=abX", PaxError::NoNewline),
            (b"10 pathab\n", PaxError::NoEquals),
            (b"7 =abc\n", PaxError::EmptyKey),
            (b"path=a\n", PaxError::NoLength),
            (b"99999999999999999999999 a=b\n", PaxError::NoLength),
            (b"11 path=ab\n12 path=", PaxError::Truncated),
        ];
        for (data, want) in cases {
            assert_eq!(
                records(data).unwrap_err(),
                *want,
                "{:?}",
                String::from_utf8_lossy(data)
            );
        }
        // A huge length in digits that fit: truncated, not an overflow.
        assert_eq!(
            records(b"18446744073709551615 a=b\n").unwrap_err(),
            PaxError::Truncated
        );
    }

    #[test]
    fn a_record_hidden_in_a_value_is_seen_only_by_the_naive_reader() {
        let data = record(b"SCHILY.xattr.user.x", b"a\n10 path=x\nb");
        let real = records(&data).unwrap();
        assert_eq!(real.len(), 1);
        let naive = naive_records(&data);
        assert_eq!(
            naive,
            vec![PaxRecord {
                key: b"path",
                value: b"x"
            }]
        );
    }

    proptest! {
        #[test]
        fn written_records_parse_back(
            pairs in proptest::collection::vec(
                ("[a-zA-Z.]{1,30}", proptest::collection::vec(any::<u8>(), 0..300)),
                0..8,
            )
        ) {
            let mut data = Vec::new();
            for (k, v) in &pairs {
                data.extend(record(k.as_bytes(), v));
            }
            let got = records(&data).unwrap();
            prop_assert_eq!(got.len(), pairs.len());
            for (r, (k, v)) in got.iter().zip(&pairs) {
                prop_assert_eq!(r.key, k.as_bytes());
                prop_assert_eq!(r.value, &v[..]);
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = records(&data);
            let _ = naive_records(&data);
        }
    }
}
