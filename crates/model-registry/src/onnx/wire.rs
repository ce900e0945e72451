//! A minimal protobuf wire-format scanner: field numbers, wire types and byte spans.
//!
//! `prost` decodes whole messages; this walks one message level without decoding it, which is
//! what truncation diagnostics and byte-preserving rewrites ([`super::externalize`]) need.

use std::ops::Range;

/// The wire type of a field (protobuf encoding).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WireType {
    Varint,
    Fixed64,
    Len,
    Fixed32,
}

/// One field of a message, as byte ranges of the scanned buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RawField {
    pub number: u32,
    pub wire_type: WireType,
    /// The whole field: key, length prefix (if any) and value.
    pub span: Range<usize>,
    /// The value: the payload of a length-delimited field, else the encoded number.
    pub value: Range<usize>,
}

/// Why a buffer is not a sequence of well-formed fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ScanError {
    /// The buffer ends inside a field that starts at `field_start` and needs `needed_len` bytes
    /// from the start of the buffer.
    Truncated {
        field_start: usize,
        number: u32,
        needed_len: u64,
    },
    /// A malformed key, an invalid wire type or a varint longer than ten bytes.
    Malformed { at: usize, reason: &'static str },
}

/// Iterator over the fields of one message level.
#[derive(Debug)]
pub(crate) struct Fields<'a> {
    buf: &'a [u8],
    pos: usize,
    failed: bool,
}

/// The fields of the message encoded in `buf`, in file order.
pub(crate) fn fields(buf: &[u8]) -> Fields<'_> {
    Fields {
        buf,
        pos: 0,
        failed: false,
    }
}

/// Reads a varint at `pos`: `Ok(Some((value, next)))`, `Ok(None)` when the buffer ends inside it.
fn varint(buf: &[u8], pos: usize) -> Result<Option<(u64, usize)>, &'static str> {
    let mut value = 0u64;
    for i in 0..10 {
        let Some(&byte) = buf.get(pos + i) else {
            return Ok(None);
        };
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte < 0x80 {
            if i == 9 && byte > 1 {
                return Err("varint overflows 64 bits");
            }
            return Ok(Some((value, pos + i + 1)));
        }
    }
    Err("varint longer than 10 bytes")
}

impl Fields<'_> {
    fn next_field(&mut self) -> Result<RawField, ScanError> {
        let start = self.pos;
        let malformed = |reason| ScanError::Malformed { at: start, reason };
        let truncated = |number, needed_len| ScanError::Truncated {
            field_start: start,
            number,
            needed_len,
        };
        let (key, after_key) = varint(self.buf, start)
            .map_err(malformed)?
            .ok_or_else(|| truncated(0, self.buf.len() as u64 + 1))?;
        let number = u32::try_from(key >> 3).map_err(|_| malformed("field number too large"))?;
        if number == 0 {
            return Err(malformed("field number 0"));
        }
        let (wire_type, value, end) = match key & 7 {
            0 => {
                let (_, end) = varint(self.buf, after_key)
                    .map_err(malformed)?
                    .ok_or_else(|| truncated(number, self.buf.len() as u64 + 1))?;
                (WireType::Varint, after_key..end, end)
            }
            1 | 5 => {
                let (wire_type, width) = if key & 7 == 1 {
                    (WireType::Fixed64, 8)
                } else {
                    (WireType::Fixed32, 4)
                };
                let end = after_key + width;
                if end > self.buf.len() {
                    return Err(truncated(number, end as u64));
                }
                (wire_type, after_key..end, end)
            }
            2 => {
                let (len, payload_start) = varint(self.buf, after_key)
                    .map_err(malformed)?
                    .ok_or_else(|| truncated(number, self.buf.len() as u64 + 1))?;
                let end = (payload_start as u64).saturating_add(len);
                if end > self.buf.len() as u64 {
                    return Err(truncated(number, end));
                }
                // Fits in the buffer, hence in usize.
                let end = end as usize;
                (WireType::Len, payload_start..end, end)
            }
            3 | 4 => return Err(malformed("group wire type (not used by ONNX)")),
            _ => return Err(malformed("invalid wire type")),
        };
        self.pos = end;
        Ok(RawField {
            number,
            wire_type,
            span: start..end,
            value,
        })
    }
}

impl Iterator for Fields<'_> {
    type Item = Result<RawField, ScanError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.pos >= self.buf.len() {
            return None;
        }
        let field = self.next_field();
        self.failed = field.is_err();
        Some(field)
    }
}

/// Appends `value` as a varint.
pub(crate) fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Appends the key and length prefix of a length-delimited field of `len` bytes.
pub(crate) fn put_len_header(out: &mut Vec<u8>, number: u32, len: u64) {
    put_varint(out, (u64::from(number) << 3) | 2);
    put_varint(out, len);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scans_fields_and_reports_truncation() {
        let mut buf = vec![0x08, 0x07]; // field 1 varint 7
        put_len_header(&mut buf, 7, 3);
        buf.extend_from_slice(b"abc");
        let all: Vec<_> = fields(&buf).collect::<Result<_, _>>().unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!((all[0].number, all[0].wire_type), (1, WireType::Varint));
        assert_eq!((all[1].number, all[1].value.clone()), (7, 4..7));

        let cut = &buf[..5];
        let err = fields(cut).find_map(Result::err).unwrap();
        assert_eq!(
            err,
            ScanError::Truncated {
                field_start: 2,
                number: 7,
                needed_len: 7
            }
        );
        assert!(matches!(
            fields(&[0x0f]).next(),
            Some(Err(ScanError::Malformed { .. }))
        ));
    }

    #[test]
    fn varint_round_trips() {
        for value in [0, 1, 127, 128, 300, u64::from(u32::MAX), u64::MAX] {
            let mut buf = Vec::new();
            put_varint(&mut buf, value);
            assert_eq!(varint(&buf, 0).unwrap(), Some((value, buf.len())));
        }
    }
}
