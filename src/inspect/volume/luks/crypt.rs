//! LUKS payload decryption: the dm-crypt ciphers LUKS volumes use (aes-xts-plain64, and
//! aes-cbc-essiv:sha256 of old LUKS1 volumes) and a [`ReadAt`] over a decrypted payload.
//!
//! Written on the `aes` block cipher rather than a mode crate: XTS and CBC-ESSIV are a
//! few lines each, and the sector-IV rules (plain64, large sectors, `iv_tweak`) are
//! dm-crypt's, not the mode's.

use std::sync::{Arc, Mutex};

use aes::cipher::{generic_array::GenericArray, BlockDecrypt, BlockEncrypt, KeyInit};
use aes::{Aes128, Aes256};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::inspect::source::ReadError;
use crate::inspect::source::{check_range, ReadAt};

use super::super::error::VolumeError;

/// One AES key schedule of either size.
#[derive(Clone)]
pub enum Aes {
    A128(Box<Aes128>),
    A256(Box<Aes256>),
}

impl Aes {
    fn new(key: &[u8]) -> Result<Aes, VolumeError> {
        match key.len() {
            16 => Ok(Aes::A128(Box::new(Aes128::new(GenericArray::from_slice(
                key,
            ))))),
            32 => Ok(Aes::A256(Box::new(Aes256::new(GenericArray::from_slice(
                key,
            ))))),
            n => Err(VolumeError::Luks(format!(
                "unsupported AES key size {n} bytes"
            ))),
        }
    }
    fn encrypt(&self, b: &mut [u8; 16]) {
        let b = GenericArray::from_mut_slice(b);
        match self {
            Aes::A128(c) => c.encrypt_block(b),
            Aes::A256(c) => c.encrypt_block(b),
        }
    }
    fn decrypt(&self, b: &mut [u8]) {
        let b = GenericArray::from_mut_slice(b);
        match self {
            Aes::A128(c) => c.decrypt_block(b),
            Aes::A256(c) => c.decrypt_block(b),
        }
    }
}

/// A sector cipher with its key.
#[derive(Clone)]
pub enum SectorCipher {
    /// aes-xts-plain64: data key, tweak key.
    Xts(Aes, Aes),
    /// aes-cbc-essiv:sha256: data key, IV key (SHA-256 of the data key).
    CbcEssiv(Aes, Aes),
}

impl SectorCipher {
    /// `spec` is dm-crypt's `cipher-mode` (`aes-xts-plain64`); `key` the volume key or
    /// a key slot's derived key.
    pub fn new(spec: &str, key: &[u8]) -> Result<SectorCipher, VolumeError> {
        match spec {
            "aes-xts-plain64" | "aes-xts-plain" => {
                if key.len() != 32 && key.len() != 64 {
                    return Err(VolumeError::Luks(format!(
                        "aes-xts key of {} bytes",
                        key.len()
                    )));
                }
                let (k1, k2) = key.split_at(key.len() / 2);
                Ok(SectorCipher::Xts(Aes::new(k1)?, Aes::new(k2)?))
            }
            "aes-cbc-essiv:sha256" => {
                let salt = Zeroizing::new(Sha256::digest(key).to_vec());
                Ok(SectorCipher::CbcEssiv(Aes::new(key)?, Aes::new(&salt)?))
            }
            other => Err(VolumeError::Luks(format!("unsupported cipher {other}"))),
        }
    }

    /// Decrypts one sector (a multiple of 16 bytes) whose IV number is `iv`.
    pub fn decrypt_sector(&self, iv: u64, data: &mut [u8]) {
        let mut t = [0u8; 16];
        t[..8].copy_from_slice(&iv.to_le_bytes());
        match self {
            SectorCipher::Xts(data_key, tweak_key) => {
                tweak_key.encrypt(&mut t);
                for block in data.chunks_exact_mut(16) {
                    xor(block, &t);
                    data_key.decrypt(block);
                    xor(block, &t);
                    // t *= x in GF(2^128), little-endian (IEEE 1619).
                    let carry = t[15] >> 7;
                    for i in (1..16).rev() {
                        t[i] = (t[i] << 1) | (t[i - 1] >> 7);
                    }
                    t[0] = (t[0] << 1) ^ (carry * 0x87);
                }
            }
            SectorCipher::CbcEssiv(data_key, iv_key) => {
                iv_key.encrypt(&mut t);
                let mut prev = t;
                for block in data.chunks_exact_mut(16) {
                    let mut c = [0u8; 16];
                    c.copy_from_slice(block);
                    data_key.decrypt(block);
                    xor(block, &prev);
                    prev = c;
                }
            }
        }
    }
}

fn xor(a: &mut [u8], b: &[u8; 16]) {
    for (x, y) in a.iter_mut().zip(b) {
        *x ^= y;
    }
}

/// Decrypted sectors kept: a few, since the filesystem layers above cache themselves.
const CACHE_SECTORS: usize = 64;

/// The decrypted payload of an unlocked LUKS volume (`/dev/mapper/luks-<uuid>`).
pub struct LuksSource {
    inner: Arc<dyn ReadAt>,
    /// Payload start and length in `inner`.
    start: u64,
    len: u64,
    sector_size: u64,
    /// Added to the 512-byte sector number to form the IV (LUKS2 `iv_tweak`).
    iv_tweak: u64,
    cipher: SectorCipher,
    /// (sector index, plaintext), most recent last.
    cache: Mutex<Vec<(u64, Zeroizing<Vec<u8>>)>>,
}

impl LuksSource {
    pub fn new(
        inner: Arc<dyn ReadAt>,
        start: u64,
        len: u64,
        sector_size: u64,
        iv_tweak: u64,
        cipher: SectorCipher,
    ) -> LuksSource {
        LuksSource {
            inner,
            start,
            len: len - len % sector_size,
            sector_size,
            iv_tweak,
            cipher,
            cache: Mutex::new(Vec::new()),
        }
    }

    fn sector(&self, index: u64, out: &mut [u8]) -> Result<(), ReadError> {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(pos) = cache.iter().position(|(i, _)| *i == index) {
            let hit = cache.remove(pos);
            out.copy_from_slice(&hit.1);
            cache.push(hit);
            return Ok(());
        }
        let mut buf = Zeroizing::new(vec![0u8; self.sector_size as usize]);
        self.inner
            .read_exact_at(self.start + index * self.sector_size, &mut buf)?;
        // dm-crypt counts IVs in 512-byte units whatever the sector size (LUKS2 never
        // sets `iv_large_sectors`), from `iv_tweak`.
        let iv = index
            .wrapping_mul(self.sector_size / 512)
            .wrapping_add(self.iv_tweak);
        self.cipher.decrypt_sector(iv, &mut buf);
        out.copy_from_slice(&buf);
        if cache.len() >= CACHE_SECTORS {
            cache.remove(0);
        }
        cache.push((index, buf));
        Ok(())
    }
}

impl ReadAt for LuksSource {
    fn size(&self) -> u64 {
        self.len
    }
    fn inflated(&self) -> u64 {
        self.inner.inflated()
    }
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), ReadError> {
        check_range(offset, buf.len(), self.len)?;
        let ss = self.sector_size;
        let mut sector = Zeroizing::new(vec![0u8; ss as usize]);
        let mut done = 0usize;
        while done < buf.len() {
            let pos = offset + done as u64;
            let (index, within) = (pos / ss, (pos % ss) as usize);
            let n = (ss as usize - within).min(buf.len() - done);
            if within == 0 && n == ss as usize {
                // A whole sector: decrypt straight into the caller's buffer.
                self.sector(index, &mut buf[done..done + n])?;
            } else {
                self.sector(index, &mut sector)?;
                buf[done..done + n].copy_from_slice(&sector[within..within + n]);
            }
            done += n;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// XTS encryption, the inverse of `decrypt_sector`, to check against the standard.
    fn xts_encrypt(c: &SectorCipher, data: &mut [u8]) {
        let SectorCipher::Xts(k1, k2) = c else {
            unreachable!()
        };
        let mut t = [0u8; 16];
        k2.encrypt(&mut t);
        for block in data.chunks_exact_mut(16) {
            let mut b = [0u8; 16];
            b.copy_from_slice(block);
            xor(&mut b, &t);
            k1.encrypt(&mut b);
            xor(&mut b, &t);
            block.copy_from_slice(&b);
            let carry = t[15] >> 7;
            for i in (1..16).rev() {
                t[i] = (t[i] << 1) | (t[i - 1] >> 7);
            }
            t[0] = (t[0] << 1) ^ (carry * 0x87);
        }
    }

    /// IEEE 1619-2007 XTS-AES-128 vector 4 (data unit 0, bytes 0..=255 twice): the
    /// ciphertext starts as the standard says, and decrypts back.
    #[test]
    fn xts_aes128_ieee_vector() {
        let key = hex("2718281828459045235360287471352631415926535897932384626433832795");
        let c = SectorCipher::new("aes-xts-plain64", &key).unwrap();
        let pt: Vec<u8> = (0..512u32).map(|i| i as u8).collect();
        let mut data = pt.clone();
        xts_encrypt(&c, &mut data);
        assert_eq!(&data[..16], &hex("27a7479befa1d476489f308cd4cfa6e2")[..]);
        c.decrypt_sector(0, &mut data);
        assert_eq!(data, pt);
    }
}
