//! Fuzzes the LUKS header parsers: the LUKS1 binary header and key slots, the LUKS2
//! binary header and its JSON area (segments, key slots, digests), and detection with
//! its secondary-header search. Any bytes must give a header or a typed error, never a
//! panic or an allocation beyond the caps; a parsed header's payload is then read
//! through the decryptor with a zero key.

#![no_main]

use std::sync::Arc;

use guestkit_worker::inspect::source::{MemSource, ReadAt};
use guestkit_worker::inspect::volume::luks::crypt::{LuksSource, SectorCipher};
use guestkit_worker::inspect::volume::luks::{self, header};
use libfuzzer_sys::fuzz_target;

/// A LUKS2 header with a 16 KiB JSON area, or LUKS1 plus key material, fits.
const MAX_INPUT: usize = 1 << 20;

fuzz_target!(|data: &[u8]| {
    if data.len() > MAX_INPUT {
        return;
    }
    let src: Arc<dyn ReadAt> = Arc::new(MemSource(data.to_vec()));
    let _ = luks::detect(src.as_ref());
    let Ok(p) = header::read(src.as_ref()) else {
        return;
    };
    let Ok(cipher) = SectorCipher::new(&p.cipher, &vec![0u8; p.key_bytes]) else {
        return;
    };
    let size = src.size();
    if p.payload_offset >= size {
        return;
    }
    let payload = LuksSource::new(
        src.clone(),
        p.payload_offset,
        size - p.payload_offset,
        p.sector_size,
        p.iv_tweak,
        cipher,
    );
    let mut buf = vec![0u8; 600.min(payload.size() as usize)];
    let _ = payload.read_exact_at(0, &mut buf);
});
