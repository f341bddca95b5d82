//! Frames on blocking streams: one message written, one read.

use std::io::{self, Read, Write};

use serde::{Deserialize, Serialize};

use crate::{decode, try_encode, FrameError, MAX_FRAME};

/// Write one message as a frame, without flushing.
///
/// # Errors
/// I/O errors of the writer; `InvalidInput` for a message larger than
/// [`MAX_FRAME`] (nothing is written).
pub fn write_frame<W: Write, T: Serialize>(w: &mut W, msg: &T) -> io::Result<()> {
    let frame =
        try_encode(msg).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
    w.write_all(&frame)
}

/// Read one frame's body from a blocking reader.
///
/// # Errors
/// [`FrameError::Eof`] at a clean end of stream, otherwise I/O or size errors.
pub fn read_frame_body<R: Read>(r: &mut R) -> Result<Vec<u8>, FrameError> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len)?;
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(FrameError::TooLarge(len));
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body)?;
    Ok(body)
}

/// Read and decode one message from a blocking reader.
///
/// # Errors
/// See [`read_frame_body`] and [`decode`].
pub fn read_frame<R: Read, T: for<'de> Deserialize<'de>>(r: &mut R) -> Result<T, FrameError> {
    decode(&read_frame_body(r)?)
}
