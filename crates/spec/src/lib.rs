//! Pure parsers and types of what users type on the `container` command line.
//!
//! One job: turn flag values (`-p 8080:80`, `-v data:/var/lib/db:ro`, `--mount …`, `-m 1g`,
//! `--cpus 1.5`, `-s TERM`, `--env-file` text, `-u app:staff`, `--ulimit nofile=1024`,
//! `--tmpfs /run:size=64m`, `--publish-socket`, `--detach-keys ctrl-p,ctrl-q`, `--filter key=value`, `volume create --opt`, labels, restart policies, `--platform linux/arm64`, `--network`,
//! `cp` operands) into checked types whose `Display` writes them back, and reject anything
//! else with one line naming what was wrong.
//!
//! Beside them, [`pax`]: the records of a tar's PAX headers, the one parser every reader of
//! image layers (the daemon's checks, the ext4 writer, vminitd) shares. And [`error_chain`]: the one-line form of an error that every message a user
//! reads is written in.
//!
//! It must not do I/O of any kind: no files, no environment, no sockets. Callers hand in
//! text and, where a value comes from the caller's environment (`-e KEY`), a lookup function.

pub mod capability;
pub mod cpus;
pub mod detach;
pub mod duration;
pub mod env;
pub mod filter;
pub mod hosts;
pub mod label;
pub mod mount;
pub mod name;
pub mod network;
pub mod pax;
pub mod platform;
pub mod port;
pub mod report;
pub mod restart;
pub mod sandbox;
pub mod signal;
pub mod size;
pub mod socket;
pub mod timestamp;
pub mod ulimit;
pub mod user;

pub use capability::{CapabilityError, parse_capability};
pub use cpus::{Cpus, CpusError};
pub use detach::{DEFAULT_DETACH_KEYS, DetachKeys, DetachKeysError, DetachScanner, Scanned};
pub use duration::{DurationError, Period, human_duration, parse_precise};
pub use env::{EnvError, EnvVar, parse_env, parse_env_file};
pub use hosts::{ExtraHost, HOST_GATEWAY, HostIp, HostsError, parse_expose, validate_hostname};
pub use label::{Label, LabelError};
pub use mount::{Mount, MountError, parse_mount, parse_tmpfs, parse_volume};
pub use name::{NameError, validate_container_name, validate_volume_name};
pub use network::{CopyOperand, NetworkError, NetworkSpec};
pub use platform::{Platform, PlatformError};
pub use port::{HostAddr, MAX_PORT_SPECS, PortError, PortSpec, Protocol, parse_ports};
pub use report::error_chain;
pub use restart::{RestartError, RestartPolicy};
pub use signal::{Signal, SignalError};
pub use size::{ByteSize, SizeError, human_bytes};
pub use socket::{PublishSocket, SocketError, check_volume_size, parse_volume_opts};
pub use timestamp::{TimestampError, format_time, parse_time};
pub use ulimit::{Limit, Ulimit, UlimitError};
pub use user::{Id, User, UserError};

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        // Whatever a user types, every parser answers with a value or a one-line error.
        #[test]
        fn no_parser_panics_or_writes_more_than_one_line(text in "(?s).{0,40}") {
            let errors: Vec<String> = [
                text.parse::<Signal>().err().map(|e| e.to_string()),
                text.parse::<User>().err().map(|e| e.to_string()),
                text.parse::<Ulimit>().err().map(|e| e.to_string()),
                text.parse::<Label>().err().map(|e| e.to_string()),
                text.parse::<RestartPolicy>().err().map(|e| e.to_string()),
                text.parse::<Platform>().err().map(|e| e.to_string()),
                text.parse::<NetworkSpec>().err().map(|e| e.to_string()),
                text.parse::<Cpus>().err().map(|e| e.to_string()),
                text.parse::<ByteSize>().err().map(|e| e.to_string()),
                text.parse::<Period>().err().map(|e| e.to_string()),
                text.parse::<PortSpec>().err().map(|e| e.to_string()),
                parse_volume(&text).err().map(|e| e.to_string()),
                parse_mount(&text).err().map(|e| e.to_string()),
                parse_tmpfs(&text).err().map(|e| e.to_string()),
                parse_env(&text, |_| None).err().map(|e| e.to_string()),
                parse_capability(&text).err().map(|e| e.to_string()),
                text.parse::<ExtraHost>().err().map(|e| e.to_string()),
                parse_expose(&text).err().map(|e| e.to_string()),
                validate_hostname(&text).err().map(|e| e.to_string()),
            ]
            .into_iter()
            .flatten()
            .collect();
            for e in errors {
                // Debug-quoting keeps a typed newline from splitting the message.
                prop_assert!(!e.contains('\n'), "{e:?}");
                prop_assert!(!e.ends_with('.'), "{e:?}");
            }
        }
    }
}
