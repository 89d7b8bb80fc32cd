//! The cpio "newc" format (magic `070701`, or `070702` with checksums) the kernel
//! unpacks an initramfs from: a 110-byte ASCII-hex header, the NUL-terminated name, the
//! data, each padded to 4 bytes; an entry named `TRAILER!!!` ends an archive, and
//! archives may follow each other with NUL padding between them.
//!
//! The scanner is fed the (decompressed) stream in chunks of any size and reports each
//! entry's name; file data is skipped, never buffered, so memory stays at one header
//! and one name whatever the archive holds.

use super::InitramfsError;

const HEADER_LEN: usize = 110;
/// Longest name accepted (PATH_MAX, as the kernel's own unpacker).
pub const MAX_NAME: usize = 4096;
const TRAILER: &str = "TRAILER!!!";

/// Where the scanner is in the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Between archives: NUL padding, or the next header.
    Between,
    /// Collecting a header (`buf` holds what arrived so far).
    Header,
    /// Collecting the name and its padding: `need` bytes in all.
    Name { need: usize, data: u64 },
    /// Skipping `left` bytes of data and padding.
    Skip { left: u64 },
}

/// An incremental newc reader.
#[derive(Debug)]
pub struct CpioScanner {
    state: State,
    buf: Vec<u8>,
    /// Bytes of the stream consumed so far (for error offsets).
    offset: u64,
    /// Stop after the first trailer (an uncompressed early segment before compressed
    /// data): [`CpioScanner::feed`] then returns how much the archive took.
    stop_at_trailer: bool,
    trailer_seen: bool,
    entries: u64,
}

fn hex_field(h: &[u8], index: usize) -> Option<u64> {
    let s = std::str::from_utf8(&h[6 + 8 * index..6 + 8 * index + 8]).ok()?;
    u64::from_str_radix(s, 16).ok()
}

/// Bytes to add to `n` to reach a multiple of 4.
fn pad4(n: u64) -> u64 {
    (4 - n % 4) % 4
}

impl CpioScanner {
    pub fn new(stop_at_trailer: bool) -> CpioScanner {
        CpioScanner {
            state: State::Between,
            buf: Vec::new(),
            offset: 0,
            stop_at_trailer,
            trailer_seen: false,
            entries: 0,
        }
    }

    /// Entries (trailers included) read so far.
    pub fn entries(&self) -> u64 {
        self.entries
    }

    /// Whether an archive's trailer was read.
    pub fn trailer_seen(&self) -> bool {
        self.trailer_seen
    }

    fn corrupt(&self, message: impl Into<String>) -> InitramfsError {
        InitramfsError::Cpio {
            offset: self.offset,
            message: message.into(),
        }
    }

    /// Reads `chunk`, calling `on_entry` with each entry's name and mode. Returns the
    /// bytes used: all of `chunk`, or (when stopping at the trailer) up to the end of
    /// the first trailer.
    pub fn feed(
        &mut self,
        chunk: &[u8],
        on_entry: &mut dyn FnMut(&str, u32) -> Result<(), InitramfsError>,
    ) -> Result<usize, InitramfsError> {
        let mut i = 0;
        while i < chunk.len() {
            if self.stop_at_trailer && self.trailer_seen {
                return Ok(i);
            }
            let rest = &chunk[i..];
            let used = match self.state {
                State::Between => {
                    let zeros = rest.iter().take_while(|&&b| b == 0).count();
                    if zeros == 0 {
                        self.state = State::Header;
                    }
                    zeros
                }
                State::Header => {
                    let take = (HEADER_LEN - self.buf.len()).min(rest.len());
                    self.buf.extend_from_slice(&rest[..take]);
                    if self.buf.len() == HEADER_LEN {
                        self.header()?;
                    }
                    take
                }
                State::Name { need, data } => {
                    let take = (need - self.buf.len()).min(rest.len());
                    self.buf.extend_from_slice(&rest[..take]);
                    if self.buf.len() == need {
                        self.name(data, on_entry)?;
                    }
                    take
                }
                State::Skip { left } => {
                    let take = left.min(rest.len() as u64);
                    let left = left - take;
                    self.state = if left == 0 {
                        State::Between
                    } else {
                        State::Skip { left }
                    };
                    take as usize
                }
            };
            i += used;
            self.offset += used as u64;
        }
        Ok(i)
    }

    /// Parses a complete header in `buf`.
    fn header(&mut self) -> Result<(), InitramfsError> {
        let h = std::mem::take(&mut self.buf);
        if &h[..6] != b"070701" && &h[..6] != b"070702" {
            return Err(self.corrupt(if h.starts_with(b"0707") {
                "old cpio format (only newc is supported)".to_string()
            } else {
                format!("no cpio header (bytes {:02x?})", &h[..4.min(h.len())])
            }));
        }
        let field = |i: usize| hex_field(&h, i);
        let (Some(mode), Some(size), Some(namesize)) = (field(1), field(6), field(11)) else {
            return Err(self.corrupt("header field is not hexadecimal"));
        };
        if namesize == 0 || namesize as usize > MAX_NAME {
            return Err(self.corrupt(format!("name size {namesize} out of range")));
        }
        // The mode is kept in `buf`'s first 4 bytes, before the name.
        self.buf = Vec::with_capacity(namesize as usize + 4);
        self.buf.extend_from_slice(&(mode as u32).to_le_bytes());
        let need = 4 + namesize as usize + pad4(HEADER_LEN as u64 + namesize) as usize;
        self.state = State::Name { need, data: size };
        Ok(())
    }

    /// Reports a complete name in `buf` and moves on to its data.
    fn name(
        &mut self,
        data: u64,
        on_entry: &mut dyn FnMut(&str, u32) -> Result<(), InitramfsError>,
    ) -> Result<(), InitramfsError> {
        let b = std::mem::take(&mut self.buf);
        let mode = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        let raw = &b[4..];
        let end = raw.iter().position(|&c| c == 0).unwrap_or(raw.len());
        let name = String::from_utf8_lossy(&raw[..end]);
        self.entries += 1;
        let left = data + pad4(data);
        self.state = if left == 0 {
            State::Between
        } else {
            State::Skip { left }
        };
        if name == TRAILER {
            self.trailer_seen = true;
            return Ok(());
        }
        on_entry(name.trim_start_matches("./"), mode)
    }

    /// Checks the stream ended between entries, after a trailer (an archive cut at an
    /// entry boundary is as truncated as one cut inside an entry).
    pub fn finish(&self) -> Result<(), InitramfsError> {
        match self.state {
            State::Between if self.trailer_seen => Ok(()),
            State::Between => Err(self.corrupt("archive ends without its trailer")),
            _ => Err(self.corrupt("archive ends in the middle of an entry")),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A newc archive of `(name, data)` entries, with its trailer.
    pub fn newc(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        for (i, (name, data)) in entries
            .iter()
            .copied()
            .chain([(TRAILER, &b""[..])])
            .enumerate()
        {
            let mode = if name.ends_with('/') {
                0o40755
            } else {
                0o100644
            };
            let name = name.trim_end_matches('/');
            out.extend(
                format!(
                    "070701{:08x}{mode:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}",
                    i, 0, 0, 1, 0, data.len(), 0, 0, 0, 0, name.len() + 1, 0
                )
                .bytes(),
            );
            out.extend(name.bytes());
            out.push(0);
            out.resize(
                out.len() + pad4(HEADER_LEN as u64 + name.len() as u64 + 1) as usize,
                0,
            );
            out.extend_from_slice(data);
            out.resize(out.len() + pad4(data.len() as u64) as usize, 0);
        }
        out
    }

    fn names(
        data: &[u8],
        chunk: usize,
        stop: bool,
    ) -> (Result<usize, InitramfsError>, Vec<String>) {
        let mut s = CpioScanner::new(stop);
        let mut got = Vec::new();
        let mut used = 0;
        for c in data.chunks(chunk) {
            match s.feed(c, &mut |n, _| {
                got.push(n.to_string());
                Ok(())
            }) {
                Ok(n) => {
                    used += n;
                    if n < c.len() {
                        break;
                    }
                }
                Err(e) => return (Err(e), got),
            }
        }
        (s.finish().map(|_| used), got)
    }

    #[test]
    fn entries_in_any_chunking_and_concatenated_archives() {
        let a = newc(&[
            ("usr/", b""),
            ("usr/lib/x.ko", b"abcde"),
            ("init", b"#!/bin/sh\n"),
        ]);
        let b = newc(&[("lib/modules/6.1/kernel/virtio_blk.ko.xz", &[7u8; 1000])]);
        let mut both = a.clone();
        both.extend([0u8; 512]);
        both.extend(&b);
        for chunk in [1, 3, 110, 4096] {
            let (r, got) = names(&both, chunk, false);
            assert_eq!(r.unwrap(), both.len());
            assert_eq!(
                got,
                [
                    "usr",
                    "usr/lib/x.ko",
                    "init",
                    "lib/modules/6.1/kernel/virtio_blk.ko.xz"
                ]
            );
        }
        // Stopping at the first trailer says where the first archive ended.
        let (r, got) = names(&both, 7, true);
        assert_eq!(r.unwrap(), a.len());
        assert_eq!(got.len(), 3);
    }

    #[test]
    fn damaged_archives_are_typed_errors() {
        let a = newc(&[("init", b"x")]);
        let (r, _) = names(&a[..a.len() - 20], 64, false);
        assert!(matches!(r, Err(InitramfsError::Cpio { .. })), "{r:?}");
        let mut odc = a.clone();
        odc[5] = b'7';
        let (r, _) = names(&odc, 64, false);
        assert!(r.unwrap_err().to_string().contains("old cpio"));
        let mut huge = a.clone();
        huge[94..102].copy_from_slice(b"00100000");
        let (r, _) = names(&huge, 64, false);
        assert!(r.unwrap_err().to_string().contains("name size"));
        let mut nonhex = a;
        nonhex[60] = b'z';
        let (r, _) = names(&nonhex, 64, false);
        assert!(r.unwrap_err().to_string().contains("hexadecimal"));
    }
}
