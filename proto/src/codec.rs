//! One message as one frame: MessagePack behind a 4-byte big-endian length,
//! within the frame limit, and the errors of framing and decoding.

use std::io;

use serde::{Deserialize, Serialize};

use crate::MAX_FRAME;

/// Errors of framing and decoding.
#[derive(Debug)]
pub enum FrameError {
    /// The stream ended cleanly between frames.
    Eof,
    /// An I/O error.
    Io(io::Error),
    /// A frame larger than [`MAX_FRAME`].
    TooLarge(usize),
    /// Bytes that are not a valid message.
    Decode(rmp_serde::decode::Error),
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::Eof => write!(f, "connection closed"),
            FrameError::Io(e) => write!(f, "i/o error: {e}"),
            FrameError::TooLarge(n) => write!(f, "frame of {n} bytes exceeds the limit"),
            FrameError::Decode(e) => write!(f, "undecodable message: {e}"),
        }
    }
}

impl std::error::Error for FrameError {}

impl From<io::Error> for FrameError {
    fn from(e: io::Error) -> Self {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            FrameError::Eof
        } else {
            FrameError::Io(e)
        }
    }
}

/// Encode a message into one frame (length prefix included).
///
/// # Panics
/// When the message is larger than [`MAX_FRAME`] (use [`try_encode`] for
/// what may be: answers, inline files).
#[must_use]
pub fn encode<T: Serialize>(msg: &T) -> Vec<u8> {
    try_encode(msg).expect("a frame within the limit")
}

/// Encode a message into one frame, or refuse one larger than [`MAX_FRAME`].
///
/// # Errors
/// [`FrameError::TooLarge`].
pub fn try_encode<T: Serialize>(msg: &T) -> Result<Vec<u8>, FrameError> {
    let mut buf = vec![0u8; 4];
    rmp_serde::encode::write(&mut buf, msg).expect("protocol messages always serialize");
    let len = buf.len() - 4;
    if len > MAX_FRAME {
        return Err(FrameError::TooLarge(len));
    }
    let len32 = u32::try_from(len).map_err(|_| FrameError::TooLarge(len))?;
    buf[..4].copy_from_slice(&len32.to_be_bytes());
    Ok(buf)
}

/// Decode the body of a frame (without its length prefix).
///
/// # Errors
/// When the bytes are not a valid message of type `T`.
pub fn decode<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, FrameError> {
    rmp_serde::from_slice(body).map_err(FrameError::Decode)
}
