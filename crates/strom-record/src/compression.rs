//! Compression of the records section. Placeholder: only `None` for now.

use crate::{Compression, Error, Result};

/// Compresses the raw records section with `codec`.
pub(crate) fn compress(codec: Compression, raw: &[u8]) -> Result<Vec<u8>> {
    match codec {
        Compression::None => Ok(raw.to_vec()),
        other => Err(Error::Compression {
            codec: other,
            reason: "not implemented".into(),
        }),
    }
}
