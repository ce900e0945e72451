//! Framing: one message per frame — a `u32` LE length, the protocol version, a tag, the body —
//! read with every length checked before anything is buffered.

use std::io::{self, Read, Write};

use super::{PROTOCOL_VERSION, ProtocolError};

/// The largest frame either side accepts: 64 MiB.
///
/// The largest legitimate message is a task's range embeddings, 1044 bytes per range: 64 MiB
/// carries 64k ranges, 13 hours of one file's diarization windows at the default 0.75 s hop.
/// A frame is held at most twice over while it is read and decoded (see [`read_frame`]), so
/// this bounds what a peer can make the other side allocate to 128 MiB, under the smallest
/// budget masp is tested with (256 MiB). A bigger output fails its task with a message naming
/// this limit instead of taking the orchestrator past its budget.
pub const MAX_FRAME: usize = 64 << 20;

/// The first allocation for a frame's bytes; it grows (at most doubling, never past the
/// announced length) only as bytes arrive, so a lying length costs nothing.
const FIRST_READ_BYTES: usize = 64 << 10;

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
/// Memory: the body's buffer is never larger than the announced length, and grows only as
/// bytes arrive; while it grows the old and new buffers coexist, 1.5 × the frame at most.
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
    // Grow with what arrives, not with what the length claims, and never past it:
    // `read_to_end` would double past the frame (a 65 MiB frame in a 128 MiB buffer).
    let mut frame = vec![0u8; len.min(FIRST_READ_BYTES)];
    let mut got = 0;
    loop {
        if got == frame.len() {
            if got == len {
                break;
            }
            let grown = got.saturating_mul(2).min(len);
            frame.reserve_exact(grown - got);
            frame.resize(grown, 0);
        }
        match r.read(&mut frame[got..]) {
            Ok(0) => return Err(ProtocolError::Truncated { expected: len, got }),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
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
        // Announces 60 MiB, sends 10 bytes: a truncation error, not a 60 MiB buffer.
        let mut f = (60u32 << 20).to_le_bytes().to_vec();
        f.extend_from_slice(&[PROTOCOL_VERSION, TAG_EXIT, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert!(matches!(
            read_frame(&mut f.as_slice()),
            Err(ProtocolError::Truncated { got: 10, .. })
        ));
    }

    #[test]
    fn a_frame_is_buffered_at_its_length_not_beyond() {
        // A body just over a power of two: a doubling buffer would take twice the frame.
        for body_len in [
            0usize,
            1,
            FIRST_READ_BYTES,
            FIRST_READ_BYTES + 1,
            (1 << 20) + 3,
        ] {
            let body = vec![7u8; body_len];
            let mut f = Vec::new();
            write_frame(&mut f, TAG_EXIT, &body).unwrap();
            let (tag, back) = read_frame(&mut f.as_slice()).unwrap().unwrap();
            assert_eq!(tag, TAG_EXIT);
            assert_eq!(back, body);
            assert!(
                back.capacity() <= body_len + 2,
                "{body_len}: {}",
                back.capacity()
            );
        }
    }

    #[test]
    fn frames_over_the_limit_are_refused_before_reading_them() {
        for len in [MAX_FRAME + 1, u32::MAX as usize] {
            let f = (len as u32).to_le_bytes();
            assert!(matches!(
                read_frame(&mut f.as_slice()),
                Err(ProtocolError::BadLength { .. })
            ));
        }
        assert!(matches!(
            write_frame(&mut Vec::new(), TAG_EXIT, &vec![0u8; MAX_FRAME - 1]),
            Err(ProtocolError::BadLength { .. })
        ));
    }
}
