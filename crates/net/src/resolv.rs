//! `resolv.conf`: read the host's (where the embedded DNS server forwards names it does not
//! own) and write a guest's (`--dns`, `--dns-search`, `--dns-option`).
//!
//! Reading follows glibc's resolver: unknown lines and unparsable nameservers are skipped,
//! `domain` and `search` replace each other (the last one wins), `options` accumulate. IPv6
//! nameservers may carry a zone (`fe80::1%eth0`); the zone is dropped, since a forwarder in
//! another namespace or VM could not use it anyway.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

/// The host's resolver configuration.
pub const HOST_RESOLV_CONF: &str = "/etc/resolv.conf";

/// Why a resolv.conf could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum ResolvError {
    /// The file could not be read.
    #[error("cannot read {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A search domain or option for the guest would break the file.
    #[error("invalid {what} {value:?}: it must be one word without spaces or '#'")]
    Invalid { what: &'static str, value: String },
}

/// What a resolv.conf says: where to send queries, which domains to append to short names,
/// and resolver options.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResolvConf {
    /// Nameservers in file order, each on port 53.
    pub nameservers: Vec<SocketAddr>,
    /// Search domains (from the last `search` or `domain` line).
    pub search: Vec<String>,
    /// Options such as `ndots:2`, in file order.
    pub options: Vec<String>,
}

impl ResolvConf {
    /// Parses resolv.conf text. Never fails: like glibc, it skips what it does not understand.
    pub fn parse(text: &str) -> ResolvConf {
        let mut conf = ResolvConf::default();
        for line in text.lines() {
            // Comments start with '#' or ';' at the beginning of a line or after a value.
            let line = line.split(['#', ';']).next().unwrap_or("");
            let mut words = line.split_whitespace();
            match words.next() {
                Some("nameserver") => {
                    if let Some(address) = words.next().and_then(parse_nameserver) {
                        conf.nameservers.push(SocketAddr::new(address, 53));
                    }
                }
                Some("search") | Some("domain") => {
                    conf.search = words.map(str::to_owned).collect();
                }
                Some("options") => conf.options.extend(words.map(str::to_owned)),
                _ => {}
            }
        }
        conf
    }

    /// Reads and parses the file at `path`.
    pub fn read(path: &Path) -> Result<ResolvConf, ResolvError> {
        let text = std::fs::read_to_string(path).map_err(|source| ResolvError::Read {
            path: path.to_owned(),
            source,
        })?;
        Ok(ResolvConf::parse(&text))
    }

    /// A guest's resolv.conf: `nameservers` (from `--dns`, or the network's gateway),
    /// `search` (`--dns-search`; a lone `.` means none, as in Docker) and `options`
    /// (`--dns-option`). Refuses words that would break the file.
    pub fn for_guest(
        nameservers: &[IpAddr],
        search: &[String],
        options: &[String],
    ) -> Result<ResolvConf, ResolvError> {
        let check = |what: &'static str, value: &String| {
            if value.is_empty()
                || value.contains(|c: char| c.is_whitespace() || c == '#' || c == ';')
            {
                Err(ResolvError::Invalid {
                    what,
                    value: value.clone(),
                })
            } else {
                Ok(())
            }
        };
        search
            .iter()
            .try_for_each(|s| check("DNS search domain", s))?;
        options.iter().try_for_each(|o| check("DNS option", o))?;
        let search = if search.len() == 1 && search[0] == "." {
            Vec::new()
        } else {
            search.to_vec()
        };
        Ok(ResolvConf {
            nameservers: nameservers
                .iter()
                .map(|ip| SocketAddr::new(ip.to_canonical(), 53))
                .collect(),
            search,
            options: options.to_vec(),
        })
    }
}

/// The file's text. resolv.conf has no port syntax, so only each nameserver's address is
/// written (the guest always asks on port 53).
impl fmt::Display for ResolvConf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for server in &self.nameservers {
            writeln!(f, "nameserver {}", server.ip())?;
        }
        if !self.search.is_empty() {
            writeln!(f, "search {}", self.search.join(" "))?;
        }
        if !self.options.is_empty() {
            writeln!(f, "options {}", self.options.join(" "))?;
        }
        Ok(())
    }
}

fn parse_nameserver(word: &str) -> Option<IpAddr> {
    let address = word
        .split_once('%')
        .map_or(word, |(address, _zone)| address);
    address.parse().ok()
}

/// The nameservers of the host's /etc/resolv.conf, on port 53. Empty when the file names
/// none (glibc would then ask 127.0.0.1; the caller decides what a forwarder should do).
pub fn host_resolvers() -> Result<Vec<SocketAddr>, ResolvError> {
    Ok(ResolvConf::read(Path::new(HOST_RESOLV_CONF))?.nameservers)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_a_typical_file() {
        let text = "\
# Generated by NetworkManager
domain corp.example
search lab.example corp.example  # trailing comment
nameserver 10.0.0.2
nameserver  2001:db8::53
nameserver fe80::1%eth0
nameserver not-an-address
nameserver
; old-style comment
options ndots:2
options timeout:1 rotate
sortlist 130.155.160.0/255.255.240.0
";
        let conf = ResolvConf::parse(text);
        assert_eq!(
            conf.nameservers,
            [
                "10.0.0.2:53".parse::<SocketAddr>().unwrap(),
                "[2001:db8::53]:53".parse().unwrap(),
                "[fe80::1]:53".parse().unwrap(),
            ]
        );
        assert_eq!(conf.search, ["lab.example", "corp.example"]);
        assert_eq!(conf.options, ["ndots:2", "timeout:1", "rotate"]);
    }

    #[test]
    fn last_of_domain_and_search_wins() {
        assert_eq!(ResolvConf::parse("search a b\ndomain c\n").search, ["c"]);
        assert_eq!(
            ResolvConf::parse("domain c\nsearch a b\n").search,
            ["a", "b"]
        );
        assert_eq!(ResolvConf::parse(""), ResolvConf::default());
    }

    #[test]
    fn writes_a_guest_file() {
        let conf = ResolvConf::for_guest(
            &[
                "192.168.64.1".parse().unwrap(),
                "2001:db8::1".parse().unwrap(),
            ],
            &["svc.example".into(), "example".into()],
            &["ndots:3".into(), "edns0".into()],
        )
        .unwrap();
        let text = conf.to_string();
        assert_eq!(
            text,
            "nameserver 192.168.64.1\nnameserver 2001:db8::1\nsearch svc.example example\noptions ndots:3 edns0\n"
        );
        assert_eq!(ResolvConf::parse(&text), conf);
        let bare =
            ResolvConf::for_guest(&["10.0.0.1".parse().unwrap()], &[".".into()], &[]).unwrap();
        assert_eq!(bare.to_string(), "nameserver 10.0.0.1\n");
    }

    #[test]
    fn refuses_words_that_would_break_the_file() {
        let e = ResolvConf::for_guest(&[], &["a\nnameserver 6.6.6.6".into()], &[]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid DNS search domain \"a\\nnameserver 6.6.6.6\": it must be one word without spaces or '#'"
        );
        assert!(ResolvConf::for_guest(&[], &[], &["ndots:1 #".into()]).is_err());
        assert!(ResolvConf::for_guest(&[], &[String::new()], &[]).is_err());
    }

    #[test]
    fn reads_a_file_and_names_a_missing_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("resolv.conf");
        std::fs::write(&path, "nameserver 127.0.0.53\noptions edns0 trust-ad\n").unwrap();
        let conf = ResolvConf::read(&path).unwrap();
        assert_eq!(
            conf.nameservers,
            ["127.0.0.53:53".parse::<SocketAddr>().unwrap()]
        );
        let missing = dir.path().join("nope");
        let e = ResolvConf::read(&missing).unwrap_err().to_string();
        assert_eq!(e, format!("cannot read {}", missing.display()));
    }

    #[test]
    fn host_file_parses_when_present() {
        // Whatever the host has, reading it must not fail when it exists.
        if Path::new(HOST_RESOLV_CONF).exists() {
            let servers = host_resolvers().unwrap();
            assert!(servers.iter().all(|s| s.port() == 53));
        }
    }

    proptest! {
        #[test]
        fn written_files_parse_back(
            servers in prop::collection::vec(any::<IpAddr>(), 0..4),
            search in prop::collection::vec("[a-z0-9-]{1,10}(\\.[a-z]{2,5})?", 0..4),
            options in prop::collection::vec("[a-z0-9:-]{1,12}", 0..4),
        ) {
            prop_assume!(search != ["."]);
            let conf = ResolvConf::for_guest(&servers, &search, &options).unwrap();
            prop_assert_eq!(ResolvConf::parse(&conf.to_string()), conf);
        }

        #[test]
        fn parse_never_panics(text in "(?s).{0,200}") {
            let conf = ResolvConf::parse(&text);
            prop_assert!(conf.nameservers.iter().all(|s| s.port() == 53));
        }
    }
}
