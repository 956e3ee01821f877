//! Writing a byte stream from the daemon (`export`, `image save`, `cp CONTAINER:PATH -`) to
//! `-o PATH` or to stdout. A file is written whole or not at all; `export` and `save` refuse
//! a terminal. It must not interpret the bytes.

use std::path::{Path, PathBuf};

use api::v1;
use tokio::io::AsyncWriteExt;

use crate::error::CliError;

/// Writes a byte stream to `-o PATH` atomically (temp file in the same directory, then
/// rename) or to stdout, which must not be a terminal.
pub(crate) async fn write_stream<S>(output: Option<&Path>, mut next: S) -> Result<(), CliError>
where
    S: AsyncNext,
{
    use std::io::IsTerminal;
    match output {
        None => {
            if std::io::stdout().is_terminal() {
                return Err(CliError::Usage(
                    "refusing to write an archive to a terminal: use -o or redirect stdout".into(),
                ));
            }
            to_stdout(next).await?;
        }
        Some(path) => {
            let dir = match path.parent() {
                Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
                _ => PathBuf::from("."),
            };
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let temp = dir.join(format!(".{name}.{}.partial", std::process::id()));
            let io = |e| CliError::io(format!("writing {}", path.display()), e);
            let result = async {
                let mut file = tokio::fs::File::create(&temp).await.map_err(io)?;
                while let Some(data) = next.next_chunk().await? {
                    file.write_all(&data).await.map_err(io)?;
                }
                file.sync_all().await.map_err(io)?;
                tokio::fs::rename(&temp, path).await.map_err(io)
            }
            .await;
            if result.is_err() {
                // Leave nothing half-written behind.
                let _ = tokio::fs::remove_file(&temp).await;
            }
            result?;
        }
    }
    Ok(())
}

/// Copies every chunk to stdout, as it comes.
pub(crate) async fn to_stdout<S: AsyncNext>(mut next: S) -> Result<(), CliError> {
    let mut stdout = tokio::io::stdout();
    while let Some(data) = next.next_chunk().await? {
        stdout
            .write_all(&data)
            .await
            .map_err(|e| CliError::io("writing stdout", e))?;
    }
    stdout
        .flush()
        .await
        .map_err(|e| CliError::io("writing stdout", e))
}

/// A source of byte chunks (the daemon's data streams).
pub(crate) trait AsyncNext {
    /// The next chunk, or `None` at the end.
    async fn next_chunk(&mut self) -> Result<Option<Vec<u8>>, CliError>;
}

impl AsyncNext for tonic::Streaming<wire::v1::DataChunk> {
    async fn next_chunk(&mut self) -> Result<Option<Vec<u8>>, CliError> {
        Ok(self.message().await?.map(|c| c.data))
    }
}

/// `cp`'s stream after its leading stat: the tar's bytes.
impl AsyncNext for tonic::Streaming<v1::CopyOutResponse> {
    async fn next_chunk(&mut self) -> Result<Option<Vec<u8>>, CliError> {
        while let Some(message) = self.message().await? {
            if let Some(v1::copy_out_response::Part::Data(data)) = message.part {
                return Ok(Some(data));
            }
        }
        Ok(None)
    }
}
