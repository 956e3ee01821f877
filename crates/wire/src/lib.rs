//! The protobuf messages that every gRPC protocol of the project shares: the CLI's API to the
//! daemon (crates/api), the daemon's API to a container's runtime (crates/runtime-api) and the
//! runtime's API to the guest agent (crates/agent).
//!
//! A process's output travels from the container's runtime through the daemon to the CLI,
//! and a tar archive or a resource sample from the guest all the way up: each hop used to
//! define its own copy of the same frames. Now each protocol imports `container/wire/v1/wire.proto` and its generated code
//! refers to these types (`extern_path`), so a frame built at one hop is relayed as is by the
//! next. A change here is a change to every protocol: bump all three version constants.

/// A blocking writer whose bytes become a gRPC stream of chunks (feature `chunks`).
#[cfg(feature = "chunks")]
mod chunks;
#[cfg(feature = "chunks")]
pub use chunks::ChunkWriter;

/// Generated messages.
#[allow(clippy::all, missing_docs)]
pub mod v1 {
    include!(concat!(env!("OUT_DIR"), "/container.wire.v1.rs"));
}

impl v1::ContainerStats {
    /// Bytes received over every link of the guest.
    pub fn network_rx_bytes(&self) -> u64 {
        self.networks.iter().map(|n| n.rx_bytes).sum()
    }

    /// Bytes sent over every link of the guest.
    pub fn network_tx_bytes(&self) -> u64 {
        self.networks.iter().map(|n| n.tx_bytes).sum()
    }
}

impl v1::StdioInput {
    /// Bytes for the process's stdin.
    pub fn stdin(data: impl Into<Vec<u8>>) -> Self {
        Self::of(v1::stdio_input::Input::Stdin(data.into()))
    }

    /// End of input: the process's stdin is closed.
    pub fn close_stdin() -> Self {
        Self::of(v1::stdio_input::Input::CloseStdin(true))
    }

    /// A new terminal size.
    pub fn resize(rows: u32, cols: u32) -> Self {
        Self::of(v1::stdio_input::Input::Resize(v1::TerminalSize {
            rows,
            cols,
        }))
    }

    /// A signal (Linux number) for the process.
    pub fn signal(signal: i32) -> Self {
        Self::of(v1::stdio_input::Input::Signal(signal))
    }

    fn of(input: v1::stdio_input::Input) -> Self {
        Self { input: Some(input) }
    }
}

impl From<v1::stdio_output::Output> for v1::StdioOutput {
    fn from(output: v1::stdio_output::Output) -> Self {
        Self {
            output: Some(output),
        }
    }
}
