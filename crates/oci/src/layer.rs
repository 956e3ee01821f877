//! Opening layer blobs as uncompressed tar streams (for the ext4 writer and for export).

use std::io::{BufReader, Read};

use crate::manifest::{Compression, Descriptor, ManifestError};
use crate::store::{ContentStore, StoreError};

/// Why a layer could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    MediaType(#[from] ManifestError),
    #[error("cannot start zstd decoder for layer {digest}")]
    Zstd {
        digest: crate::Digest,
        #[source]
        source: std::io::Error,
    },
}

impl LayerError {
    pub fn kind(&self) -> crate::ErrorKind {
        match self {
            LayerError::Store(e) => e.kind(),
            LayerError::MediaType(e) => e.kind(),
            LayerError::Zstd { .. } => crate::ErrorKind::Internal,
        }
    }
}

/// Opens the layer `desc` from the store as a stream of uncompressed tar bytes, choosing
/// the decoder from the media type (tar, tar+gzip, tar+zstd).
pub fn open_layer(
    store: &ContentStore,
    desc: &Descriptor,
) -> Result<Box<dyn Read + Send>, LayerError> {
    let compression = Compression::of_layer(&desc.media_type)?;
    let file = BufReader::with_capacity(1 << 17, store.open_blob(&desc.digest)?);
    Ok(match compression {
        Compression::None => Box::new(file),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(file)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(file).map_err(
            |source| LayerError::Zstd {
                digest: desc.digest.clone(),
                source,
            },
        )?),
    })
}
