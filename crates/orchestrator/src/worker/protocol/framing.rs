//! Framing: one message per frame — a `u32` LE length, the protocol version, a tag, the body —
//! read with every length checked before anything is buffered.

use std::io::{self, Read, Write};

use super::{PROTOCOL_VERSION, ProtocolError};

/// The largest frame either side accepts: 256 MiB (a 10-hour file's per-window embeddings are
/// ~45 MiB).
pub const MAX_FRAME: usize = 256 << 20;

/// Write one frame: `tag` and `body` behind the length and version.
///
/// # Errors
/// The pipe's error; [`ProtocolError::BadLength`] for a body over [`MAX_FRAME`].
pub fn write_frame(w: &mut impl Write, tag: u8, body: &[u8]) -> Result<(), ProtocolError> {
    let len = body.len() + 2;
    if len > MAX_FRAME {
        return Err(ProtocolError::BadLength {
            len: len as u64,
            max: MAX_FRAME,
        });
    }
    let mut head = [0u8; 6];
    head[..4].copy_from_slice(&(len as u32).to_le_bytes());
    head[4] = PROTOCOL_VERSION;
    head[5] = tag;
    w.write_all(&head)?;
    w.write_all(body)?;
    w.flush()?;
    Ok(())
}

/// Read one frame: `(tag, body)`, or `None` at a clean end of stream (between frames).
///
/// # Errors
/// [`ProtocolError::Truncated`] when the stream ends inside a frame, [`ProtocolError::BadLength`],
/// [`ProtocolError::Version`], the pipe's error.
pub fn read_frame(r: &mut impl Read) -> Result<Option<(u8, Vec<u8>)>, ProtocolError> {
    let mut len_bytes = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        match r.read(&mut len_bytes[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => {
                return Err(ProtocolError::Truncated { expected: 4, got });
            }
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    let len = u32::from_le_bytes(len_bytes) as usize;
    if !(2..=MAX_FRAME).contains(&len) {
        return Err(ProtocolError::BadLength {
            len: len as u64,
            max: MAX_FRAME,
        });
    }
    // Grow with what arrives, not with what the length claims.
    let mut frame = Vec::with_capacity(len.min(64 << 10));
    r.take(len as u64).read_to_end(&mut frame)?;
    if frame.len() < len {
        return Err(ProtocolError::Truncated {
            expected: len,
            got: frame.len(),
        });
    }
    if frame[0] != PROTOCOL_VERSION {
        return Err(ProtocolError::Version { got: frame[0] });
    }
    let tag = frame[1];
    frame.drain(..2);
    Ok(Some((tag, frame)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    /// Any tag: framing does not look at it (3 is `Exit`'s).
    const TAG_EXIT: u8 = 3;

    #[test]
    fn a_clean_end_between_frames_is_not_an_error() {
        assert!(read_frame(&mut [].as_slice()).unwrap().is_none());
    }

    #[test]
    fn a_lying_length_costs_only_the_bytes_that_arrive() {
        // Announces 200 MiB, sends 10 bytes: a truncation error, not a 200 MiB buffer.
        let mut f = (200u32 << 20).to_le_bytes().to_vec();
        f.extend_from_slice(&[PROTOCOL_VERSION, TAG_EXIT, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert!(matches!(
            read_frame(&mut f.as_slice()),
            Err(ProtocolError::Truncated { got: 10, .. })
        ));
    }
}
