//! The full LUKS header, as unlocking needs it: key slots (KDF, anti-forensic
//! stripes, key material area), the volume-key digest and the encrypted segment.
//!
//! LUKS1 keeps all of it in one 592-byte binary header; LUKS2 keeps a 4 KiB binary
//! header followed by a JSON area (`keyslots`, `segments`, `digests`). Both are hostile
//! input: the JSON area is read with a size cap, slot counts, stripe counts and KDF
//! costs are bounded here, before anything is derived or allocated from them.

use serde_json::Value;

use crate::inspect::bytes::{be32, be64, field, label};
use crate::inspect::source::{read_vec, ReadAt};

use super::super::error::VolumeError;

/// Largest LUKS2 header (binary + JSON) cryptsetup writes: 4 MiB.
const MAX_LUKS2_HDR: u64 = 4 << 20;
/// Most key slots considered (LUKS1 has 8, LUKS2 allows 32).
const MAX_SLOTS: usize = 32;
/// Most anti-forensic stripes (cryptsetup always writes 4000).
const MAX_STRIPES: u32 = 4000;
/// Largest volume key (512-bit for aes-xts-256).
const MAX_KEY_BYTES: usize = 64;
/// Bounds on KDF costs a job may pay per key slot and passphrase.
pub const MAX_PBKDF2_ITERATIONS: u32 = 20_000_000;
pub const MAX_ARGON2_MEMORY_KIB: u32 = 1 << 20;
pub const MAX_ARGON2_TIME: u32 = 32;
pub const MAX_ARGON2_LANES: u32 = 16;
const LUKS1_SLOT_ACTIVE: u32 = 0x00AC_71F3;

/// A key derivation function with its parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kdf {
    Pbkdf2 {
        hash: String,
        iterations: u32,
        salt: Vec<u8>,
    },
    Argon2 {
        /// `argon2i` or `argon2id`.
        variant: String,
        time: u32,
        memory_kib: u32,
        lanes: u32,
        salt: Vec<u8>,
    },
}

/// One active key slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keyslot {
    pub id: String,
    pub kdf: Kdf,
    /// Anti-forensic splitter: stripes and its hash.
    pub stripes: u32,
    pub af_hash: String,
    /// Where the split key material lives (bytes from the header start).
    pub area_offset: u64,
    /// Cipher of the key material area (`aes-xts-plain64`) and its key size.
    pub area_cipher: String,
    pub area_key_bytes: usize,
    /// Size of the volume key this slot holds.
    pub key_bytes: usize,
}

/// How a candidate volume key is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyDigest {
    pub hash: String,
    pub iterations: u32,
    pub salt: Vec<u8>,
    pub digest: Vec<u8>,
    /// Key slots this digest covers (LUKS2); empty means all.
    pub keyslots: Vec<String>,
}

/// What unlocking a LUKS volume needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LuksParams {
    pub version: u16,
    pub uuid: String,
    /// Payload cipher (`aes-xts-plain64`).
    pub cipher: String,
    pub key_bytes: usize,
    /// Payload start and (for a fixed-size LUKS2 segment) length, in bytes.
    pub payload_offset: u64,
    pub payload_size: Option<u64>,
    pub sector_size: u64,
    pub iv_tweak: u64,
    pub keyslots: Vec<Keyslot>,
    pub digests: Vec<KeyDigest>,
}

fn err(m: impl Into<String>) -> VolumeError {
    VolumeError::Luks(m.into())
}

/// Parses the LUKS header at the start of `src`.
pub fn read(src: &dyn ReadAt) -> Result<LuksParams, VolumeError> {
    let h = read_vec(src, 0, 4096.min(src.size()), 4096)?;
    parse(&h, |off, len| Ok(read_vec(src, off, len, MAX_LUKS2_HDR)?))
}

/// Parses a header from its first bytes `h` (at least 592 for LUKS1, 4096 for LUKS2);
/// `more(offset, len)` reads further (the LUKS2 JSON area).
pub fn parse(
    h: &[u8],
    more: impl Fn(u64, u64) -> Result<Vec<u8>, VolumeError>,
) -> Result<LuksParams, VolumeError> {
    if h.len() < 592 || field(h, 0, 6) != b"LUKS\xba\xbe" {
        return Err(err("no LUKS header"));
    }
    match u16::from_be_bytes([h[6], h[7]]) {
        1 => parse_luks1(h),
        2 => {
            if h.len() < 4096 {
                return Err(err("truncated LUKS2 header"));
            }
            let hdr_size = be64(h, 8);
            if !(4096 + 1024..=MAX_LUKS2_HDR).contains(&hdr_size) {
                return Err(err(format!("LUKS2 header size {hdr_size}")));
            }
            let json = more(4096, hdr_size - 4096)?;
            parse_luks2(h, &json)
        }
        v => Err(err(format!("unsupported LUKS version {v}"))),
    }
}

fn text(h: &[u8], at: usize, len: usize) -> String {
    label(&h[at..at + len]).unwrap_or_default()
}

fn parse_luks1(h: &[u8]) -> Result<LuksParams, VolumeError> {
    let cipher = format!("{}-{}", text(h, 8, 32), text(h, 40, 32));
    let hash = text(h, 72, 32);
    let key_bytes = be32(h, 108) as usize;
    if key_bytes == 0 || key_bytes > MAX_KEY_BYTES {
        return Err(err(format!("key size {key_bytes} bytes")));
    }
    let mut keyslots = Vec::new();
    for i in 0..8 {
        let s = 208 + i * 48;
        if be32(h, s) != LUKS1_SLOT_ACTIVE {
            continue;
        }
        let stripes = be32(h, s + 44);
        check_stripes(stripes)?;
        keyslots.push(Keyslot {
            id: i.to_string(),
            kdf: Kdf::Pbkdf2 {
                hash: hash.clone(),
                iterations: be32(h, s + 4),
                salt: h[s + 8..s + 40].to_vec(),
            },
            stripes,
            af_hash: hash.clone(),
            area_offset: u64::from(be32(h, s + 40)) * 512,
            area_cipher: cipher.clone(),
            area_key_bytes: key_bytes,
            key_bytes,
        });
    }
    Ok(LuksParams {
        version: 1,
        uuid: text(h, 168, 40),
        cipher,
        key_bytes,
        payload_offset: u64::from(be32(h, 104)) * 512,
        payload_size: None,
        sector_size: 512,
        iv_tweak: 0,
        keyslots,
        digests: vec![KeyDigest {
            hash,
            iterations: be32(h, 164),
            salt: h[132..164].to_vec(),
            digest: h[112..132].to_vec(),
            keyslots: Vec::new(),
        }],
    })
}

fn check_stripes(stripes: u32) -> Result<(), VolumeError> {
    if stripes == 0 || stripes > MAX_STRIPES {
        return Err(err(format!("{stripes} anti-forensic stripes")));
    }
    Ok(())
}

/// A JSON number, or a decimal string (LUKS2 writes 64-bit sizes as strings).
fn num(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

fn get<'a>(v: &'a Value, key: &str, what: &str) -> Result<&'a Value, VolumeError> {
    v.get(key)
        .ok_or_else(|| err(format!("LUKS2 {what}: no {key}")))
}

fn get_num(v: &Value, key: &str, what: &str) -> Result<u64, VolumeError> {
    num(get(v, key, what)?).ok_or_else(|| err(format!("LUKS2 {what}: bad {key}")))
}

fn get_u32(v: &Value, key: &str, what: &str) -> Result<u32, VolumeError> {
    u32::try_from(get_num(v, key, what)?).map_err(|_| err(format!("LUKS2 {what}: bad {key}")))
}

fn get_str<'a>(v: &'a Value, key: &str, what: &str) -> Result<&'a str, VolumeError> {
    get(v, key, what)?
        .as_str()
        .ok_or_else(|| err(format!("LUKS2 {what}: bad {key}")))
}

fn get_b64(v: &Value, key: &str, what: &str) -> Result<Vec<u8>, VolumeError> {
    base64(get_str(v, key, what)?).ok_or_else(|| err(format!("LUKS2 {what}: bad base64 {key}")))
}

fn parse_luks2(h: &[u8], json: &[u8]) -> Result<LuksParams, VolumeError> {
    let end = json.iter().position(|&b| b == 0).unwrap_or(json.len());
    // serde_json bounds nesting depth (128) itself; the size is bounded by the caller.
    let root: Value =
        serde_json::from_slice(&json[..end]).map_err(|e| err(format!("LUKS2 JSON area: {e}")))?;
    let segment = get(&root, "segments", "header")?
        .as_object()
        .and_then(|s| {
            s.values()
                .find(|s| s.get("type").and_then(Value::as_str) == Some("crypt"))
        })
        .ok_or_else(|| err("LUKS2: no crypt segment"))?;
    let cipher = get_str(segment, "encryption", "segment")?.to_string();
    let sector_size = get_num(segment, "sector_size", "segment")?;
    if !matches!(sector_size, 512 | 1024 | 2048 | 4096) {
        return Err(err(format!("LUKS2 sector size {sector_size}")));
    }
    let payload_size = match get(segment, "size", "segment")? {
        Value::String(s) if s == "dynamic" => None,
        v => Some(num(v).ok_or_else(|| err("LUKS2 segment: bad size"))?),
    };
    let mut keyslots = Vec::new();
    let slots = get(&root, "keyslots", "header")?
        .as_object()
        .ok_or_else(|| err("LUKS2: keyslots is not an object"))?;
    if slots.len() > MAX_SLOTS {
        return Err(err(format!("{} key slots", slots.len())));
    }
    let mut key_bytes = 0;
    for (id, s) in slots {
        let what = "key slot";
        if get_str(s, "type", what)? != "luks2" {
            continue;
        }
        let af = get(s, "af", what)?;
        let area = get(s, "area", what)?;
        let kdf = get(s, "kdf", what)?;
        let stripes = get_u32(af, "stripes", what)?;
        check_stripes(stripes)?;
        let kb = get_num(s, "key_size", what)? as usize;
        let area_kb = get_num(area, "key_size", what)? as usize;
        if kb == 0 || kb > MAX_KEY_BYTES || area_kb == 0 || area_kb > MAX_KEY_BYTES {
            return Err(err(format!("key slot {id}: key size {kb}/{area_kb} bytes")));
        }
        key_bytes = kb;
        let kdf = match get_str(kdf, "type", what)? {
            "pbkdf2" => Kdf::Pbkdf2 {
                hash: get_str(kdf, "hash", what)?.to_string(),
                iterations: get_u32(kdf, "iterations", what)?,
                salt: get_b64(kdf, "salt", what)?,
            },
            v @ ("argon2i" | "argon2id") => Kdf::Argon2 {
                variant: v.to_string(),
                time: get_u32(kdf, "time", what)?,
                memory_kib: get_u32(kdf, "memory", what)?,
                lanes: get_u32(kdf, "cpus", what)?,
                salt: get_b64(kdf, "salt", what)?,
            },
            other => return Err(err(format!("key slot {id}: KDF {other}"))),
        };
        keyslots.push(Keyslot {
            id: id.clone(),
            kdf,
            stripes,
            af_hash: get_str(af, "hash", what)?.to_string(),
            area_offset: get_num(area, "offset", what)?,
            area_cipher: get_str(area, "encryption", what)?.to_string(),
            area_key_bytes: area_kb,
            key_bytes: kb,
        });
    }
    let mut digests = Vec::new();
    if let Some(ds) = root.get("digests").and_then(Value::as_object) {
        for d in ds.values().take(MAX_SLOTS) {
            let what = "digest";
            if get_str(d, "type", what)? != "pbkdf2" {
                continue;
            }
            let keyslots = get(d, "keyslots", what)?
                .as_array()
                .map(|a| {
                    a.iter()
                        .take(MAX_SLOTS)
                        .filter_map(|v| v.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            digests.push(KeyDigest {
                hash: get_str(d, "hash", what)?.to_string(),
                iterations: get_u32(d, "iterations", what)?,
                salt: get_b64(d, "salt", what)?,
                digest: get_b64(d, "digest", what)?,
                keyslots,
            });
        }
    }
    Ok(LuksParams {
        version: 2,
        uuid: text(h, 168, 40),
        cipher,
        key_bytes,
        payload_offset: get_num(segment, "offset", "segment")?,
        payload_size,
        sector_size,
        iv_tweak: get_num(segment, "iv_tweak", "segment")?,
        keyslots,
        digests,
    })
}

/// Standard base64 (with or without padding), as LUKS2 writes salts and digests.
fn base64(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => break,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_decodes_padded_and_bare() {
        assert_eq!(base64("aGVsbG8=").unwrap(), b"hello");
        assert_eq!(base64("aGVsbG8").unwrap(), b"hello");
        assert_eq!(base64("a?"), None);
    }

    fn luks2(json: &str) -> Result<LuksParams, VolumeError> {
        let mut h = vec![0u8; 4096];
        h[..6].copy_from_slice(b"LUKS\xba\xbe");
        h[6..8].copy_from_slice(&2u16.to_be_bytes());
        h[8..16].copy_from_slice(&16384u64.to_be_bytes());
        let json = json.as_bytes().to_vec();
        parse(&h, |_, len| {
            let mut j = json.clone();
            j.resize(len as usize, 0);
            Ok(j)
        })
    }

    #[test]
    fn hostile_luks2_json_gives_typed_errors() {
        for j in [
            "{",
            "[]",
            "{\"segments\":{}}",
            "{\"segments\":{\"0\":{\"type\":\"crypt\",\"encryption\":\"aes-xts-plain64\",\"sector_size\":3}}}",
            "{\"segments\":{\"0\":{\"type\":\"crypt\",\"encryption\":\"x\",\"sector_size\":512,\"size\":\"dynamic\",\"offset\":\"0\",\"iv_tweak\":\"0\"}},\
             \"keyslots\":{\"0\":{\"type\":\"luks2\",\"key_size\":64,\"af\":{\"stripes\":4294967295,\"hash\":\"sha256\"},\"area\":{},\"kdf\":{}}}}",
        ] {
            assert!(matches!(luks2(j), Err(VolumeError::Luks(_))), "{j}");
        }
    }
}
