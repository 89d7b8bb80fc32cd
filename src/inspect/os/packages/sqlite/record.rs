//! SQLite's variable-length integers and its record format (one table row).
//!
//! A record is a header (its own length as a varint, then one "serial type" varint per
//! column) followed by the column values, whose sizes the serial types give.

/// Reads a SQLite varint at `at`: 1 to 9 bytes, big-endian, 7 bits per byte with the high
/// bit meaning "more", except the 9th byte which contributes all 8 bits. Returns the
/// value and its length, or `None` if the bytes end first.
pub fn varint(bytes: &[u8], at: usize) -> Option<(u64, usize)> {
    let mut value = 0u64;
    for i in 0..9 {
        let b = *bytes.get(at.checked_add(i)?)?;
        if i == 8 {
            return Some(((value << 8) | u64::from(b), 9));
        }
        value = (value << 7) | u64::from(b & 0x7f);
        if b & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

/// One column value of a record, borrowing from the payload.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value<'a> {
    Null,
    Integer(i64),
    /// The IEEE-754 bits of a REAL, kept raw: nothing here needs floats.
    Real(u64),
    Text(&'a [u8]),
    Blob(&'a [u8]),
}

/// Why a record could not be decoded; the caller adds where the record came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordError(pub String);

/// Decodes all columns of a record. The column count is bounded by the header length,
/// itself bounded by the payload, so no disk value sizes an allocation on its own.
pub fn decode(payload: &[u8]) -> Result<Vec<Value<'_>>, RecordError> {
    let (header_len, n) =
        varint(payload, 0).ok_or_else(|| RecordError("record header length truncated".into()))?;
    let header_len = usize::try_from(header_len)
        .ok()
        .filter(|&h| h >= n && h <= payload.len())
        .ok_or_else(|| {
            RecordError(format!(
                "record header length {header_len} outside the {}-byte payload",
                payload.len()
            ))
        })?;
    let mut values = Vec::new();
    let mut at = n;
    let mut body = header_len;
    while at < header_len {
        let (serial, len) = varint(&payload[..header_len], at)
            .ok_or_else(|| RecordError(format!("serial type at byte {at} truncated")))?;
        at += len;
        let size = match serial {
            0 | 8 | 9 => 0,
            1..=4 => serial as usize,
            5 => 6,
            6 | 7 => 8,
            10 | 11 => return Err(RecordError(format!("reserved serial type {serial}"))),
            // (serial - 12) / 2 fits usize on 64-bit; on 32-bit a huge one fails below.
            n => usize::try_from((n - 12) / 2).unwrap_or(usize::MAX),
        };
        let content = body
            .checked_add(size)
            .and_then(|end| payload.get(body..end))
            .ok_or_else(|| {
                RecordError(format!(
                    "column {} of {size} bytes at byte {body} overruns the payload",
                    values.len()
                ))
            })?;
        body += size;
        values.push(match serial {
            0 => Value::Null,
            1..=6 => Value::Integer(be_int(content)),
            7 => Value::Real(be_int(content) as u64),
            8 => Value::Integer(0),
            9 => Value::Integer(1),
            n if n % 2 == 0 => Value::Blob(content),
            _ => Value::Text(content),
        });
    }
    Ok(values)
}

/// A big-endian two's-complement integer of 1 to 8 bytes.
fn be_int(bytes: &[u8]) -> i64 {
    let mut v: i64 = if bytes.first().is_some_and(|b| b & 0x80 != 0) {
        -1
    } else {
        0
    };
    for &b in bytes {
        v = (v << 8) | i64::from(b);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints() {
        assert_eq!(varint(&[0x05], 0), Some((5, 1)));
        assert_eq!(varint(&[0x81, 0x00], 0), Some((128, 2)));
        assert_eq!(varint(&[0xff; 9], 0), Some((u64::MAX, 9)));
        assert_eq!(varint(&[0x81], 0), None);
        assert_eq!(varint(&[], 0), None);
        assert_eq!(varint(&[1], usize::MAX), None);
    }

    #[test]
    fn decodes_a_record() {
        // header: len 6; NULL, int8, int16, text(3), blob(2); body
        let rec = [
            6u8, 0, 1, 2, 19, 16, 0xff, 0x01, 0x00, b'a', b'b', b'c', 9, 8,
        ];
        let v = decode(&rec).unwrap();
        assert_eq!(
            v,
            vec![
                Value::Null,
                Value::Integer(-1),
                Value::Integer(256),
                Value::Text(b"abc"),
                Value::Blob(&[9, 8])
            ]
        );
        for end in 0..rec.len() {
            assert!(decode(&rec[..end]).is_err());
        }
        assert!(decode(&[2, 10]).is_err());
        assert!(decode(&[0x7f]).is_err());
    }
}
