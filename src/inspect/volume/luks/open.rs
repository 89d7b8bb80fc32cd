//! Unlocking LUKS volumes with supplied passphrases: key slot KDF (PBKDF2, Argon2i/id),
//! key material decryption, anti-forensic merge, volume-key digest check; the payload
//! then becomes `/dev/mapper/luks-<uuid>`, probed like any other device.
//!
//! Key material is held in [`Zeroizing`] buffers and never formatted: errors and
//! warnings name the device, the UUID and the slot, nothing derived from a key.

use std::sync::Arc;

use hmac::Hmac;
use sha1::Sha1;
use sha2::{Digest, Sha256, Sha512};
use zeroize::Zeroizing;

use crate::inspect::report::EncryptedVolumeInfo;
use crate::inspect::source::{read_vec, ReadAt};
use crate::inspect::work::{Work, WorkStop};

use super::super::error::VolumeError;
use super::super::BlockDevice;
use super::crypt::{LuksSource, SectorCipher};
use super::header::{self, Kdf, Keyslot, LuksParams};

/// Passphrases supplied for a job. `Debug` shows counts only; serialized only into the
/// isolated child's stdin request.
#[derive(Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct LuksKeys {
    /// (LUKS UUID or guest device name, passphrase)
    pub named: Vec<(String, Zeroizing<Vec<u8>>)>,
    /// Tried on every locked volume (the daemon's `default` file, `--keys-from-stdin`).
    pub any: Vec<Zeroizing<Vec<u8>>>,
}

impl std::fmt::Debug for LuksKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "LuksKeys {{ named: {}, any: {} }}",
            self.named.len(),
            self.any.len()
        )
    }
}

/// Largest key file read (cryptsetup's passphrases are at most 512 bytes). With
/// [`MAX_KEY_FILES`], the keys fit the isolated child's 64 MiB request even as JSON.
const MAX_KEY_FILE: u64 = 64 << 10;
/// Most key files read from a keys directory.
const MAX_KEY_FILES: usize = 128;

/// Why supplied keys could not be read. Names the file, never its content.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("key {0:?}: expected UUID_OR_DEVICE:file:PATH")]
    Spec(String),
    #[error("key file {path}: {source}")]
    Io {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("key file {0}: larger than 64 KiB")]
    TooLarge(std::path::PathBuf),
    #[error("keys directory {0}: more than {MAX_KEY_FILES} files")]
    TooMany(std::path::PathBuf),
}

/// Reads a whole key file (its exact bytes, as `cryptsetup --key-file` uses them).
fn read_key_file(path: &std::path::Path) -> Result<Zeroizing<Vec<u8>>, KeyError> {
    use std::io::Read;
    let io = |source| KeyError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut buf = Zeroizing::new(Vec::new());
    std::fs::File::open(path)
        .map_err(io)?
        .take(MAX_KEY_FILE + 1)
        .read_to_end(&mut buf)
        .map_err(io)?;
    if buf.len() as u64 > MAX_KEY_FILE {
        return Err(KeyError::TooLarge(path.to_path_buf()));
    }
    Ok(buf)
}

impl LuksKeys {
    /// The daemon's `--luks-keys-dir`: a file per volume named by its LUKS UUID, and
    /// `default`, tried on every volume. Hidden files (a mounted Secret's `..data`
    /// links) and subfolders are skipped.
    pub fn from_dir(dir: &std::path::Path) -> Result<LuksKeys, KeyError> {
        let io = |source| KeyError::Io {
            path: dir.to_path_buf(),
            source,
        };
        let mut keys = LuksKeys::default();
        let mut names = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(io)? {
            let entry = entry.map_err(io)?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || !entry.path().is_file() {
                continue;
            }
            if names.len() >= MAX_KEY_FILES {
                return Err(KeyError::TooMany(dir.to_path_buf()));
            }
            names.push(name);
        }
        names.sort();
        for name in names {
            let key = read_key_file(&dir.join(&name))?;
            if name == "default" {
                keys.any.push(key);
            } else {
                keys.named.push((name, key));
            }
        }
        Ok(keys)
    }

    /// Adds the CLI's `--key UUID_OR_DEVICE:file:PATH`.
    pub fn add_cli_key(&mut self, spec: &str) -> Result<(), KeyError> {
        let (id, path) = spec
            .split_once(":file:")
            .filter(|(id, p)| !id.is_empty() && !p.is_empty())
            .ok_or_else(|| KeyError::Spec(spec.to_string()))?;
        let key = read_key_file(std::path::Path::new(path))?;
        self.named.push((id.to_string(), key));
        Ok(())
    }

    /// Adds the CLI's `--keys-from-stdin`: one passphrase per line (line ends removed),
    /// each tried on every volume.
    pub fn add_lines(&mut self, text: &[u8]) {
        for line in text.split(|&b| b == b'\n') {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if !line.is_empty() {
                self.any.push(Zeroizing::new(line.to_vec()));
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.named.is_empty() && self.any.is_empty()
    }
    /// The passphrases to try on a volume: those named for it first, then the others.
    fn for_volume<'a>(&'a self, uuid: &str, device: &str) -> Vec<&'a [u8]> {
        let mut v: Vec<&[u8]> = self
            .named
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(uuid) || n == device)
            .map(|(_, k)| k.as_slice())
            .collect();
        v.extend(self.any.iter().map(|k| k.as_slice()));
        v
    }
}

/// What [`unlock`] produced.
#[derive(Default)]
pub struct Opened {
    /// Unlocked payloads, named `/dev/mapper/luks-<uuid>`.
    pub devices: Vec<BlockDevice>,
    pub encrypted: Vec<EncryptedVolumeInfo>,
    pub warnings: Vec<String>,
    /// The members that are not LUKS volumes, for the rest of the volume layer.
    pub rest: Vec<BlockDevice>,
}

/// Work units charged per [`KDF_UNIT`] PBKDF2 iterations (per hash block of output) or
/// Argon2 KiB-passes: about a microsecond of CPU each, like the rest of the work budget.
/// A real header (cryptsetup calibrates to ~2 s) costs about a million; the default
/// budget pays for a few such slots, not for dozens at the maximum cost.
pub const KDF_UNIT: u64 = 4;

/// Reports every LUKS volume among `members` and unlocks those a key opens; key
/// derivation is paid from the job's `work` budget.
pub fn unlock(members: Vec<BlockDevice>, keys: &LuksKeys, work: &Work) -> Opened {
    let mut out = Opened::default();
    for m in members {
        let Ok(Some(h)) = super::detect(m.src.as_ref()) else {
            out.rest.push(m);
            continue;
        };
        let mut info = EncryptedVolumeInfo {
            device: m.name.clone(),
            enc_type: format!("luks{}", h.version),
            uuid: h.uuid.clone(),
            unlocked: false,
            mapped_device: None,
            cipher: None,
            key_size: None,
        };
        let params = header::read(m.src.as_ref());
        if let Ok(p) = &params {
            info.cipher = Some(p.cipher.clone());
            info.key_size = u32::try_from(p.key_bytes * 8).ok();
        }
        let uuid = h.uuid.clone().unwrap_or_default();
        let tried = keys.for_volume(&uuid, &m.name);
        if tried.is_empty() {
            out.warnings.push(format!(
                "{}: LUKS volume {uuid} is locked (no key supplied): its contents are not inspected",
                m.name
            ));
        } else {
            match params.and_then(|p| open_volume(&m, &p, &tried, work)) {
                Ok(Some(src)) => {
                    let name = format!("/dev/mapper/luks-{uuid}");
                    info.unlocked = true;
                    info.mapped_device = Some(name.clone());
                    out.devices.push(BlockDevice { name, src });
                }
                Ok(None) => out.warnings.push(format!(
                    "{}: LUKS volume {uuid}: no supplied key opens it: its contents are not inspected",
                    m.name
                )),
                Err(e) => out.warnings.push(format!(
                    "{}: LUKS volume {uuid} not unlocked: {e}",
                    m.name
                )),
            }
        }
        out.encrypted.push(info);
    }
    out
}

/// Tries each passphrase on each key slot; the payload source when one opens it.
fn open_volume(
    m: &BlockDevice,
    p: &LuksParams,
    passphrases: &[&[u8]],
    work: &Work,
) -> Result<Option<Arc<dyn ReadAt>>, VolumeError> {
    // The payload cipher must be one we decrypt before any KDF time is spent.
    SectorCipher::new(&p.cipher, &vec![0u8; p.key_bytes])?;
    // A slot too costly for what is left of the budget is skipped (a cheaper one may
    // still open the volume); if none does, that refusal is the answer.
    let mut refused = None;
    for pass in passphrases {
        for slot in &p.keyslots {
            match try_slot(m.src.as_ref(), p, slot, pass, work) {
                Ok(Some(key)) => return payload(m, p, &key).map(Some),
                Ok(None) => {}
                Err(
                    e @ VolumeError::KdfBudget {
                        stop: WorkStop::Exhausted { .. },
                        ..
                    },
                ) => {
                    refused.get_or_insert(e);
                }
                Err(e) => return Err(e),
            }
        }
    }
    refused.map_or(Ok(None), Err)
}

fn payload(m: &BlockDevice, p: &LuksParams, key: &[u8]) -> Result<Arc<dyn ReadAt>, VolumeError> {
    let size = m.src.size();
    let len = match p.payload_size {
        Some(n) => n,
        None => size.saturating_sub(p.payload_offset),
    };
    if p.payload_offset
        .checked_add(len)
        .is_none_or(|end| end > size)
        || len < p.sector_size
    {
        return Err(VolumeError::Luks(format!(
            "payload {}+{len} outside the device of {size} bytes",
            p.payload_offset
        )));
    }
    let cipher = SectorCipher::new(&p.cipher, key)?;
    Ok(Arc::new(LuksSource::new(
        m.src.clone(),
        p.payload_offset,
        len,
        p.sector_size,
        p.iv_tweak,
        cipher,
    )))
}

/// The volume key held by `slot` if `pass` opens it (the digest agrees).
fn try_slot(
    src: &dyn ReadAt,
    p: &LuksParams,
    slot: &Keyslot,
    pass: &[u8],
    work: &Work,
) -> Result<Option<Zeroizing<Vec<u8>>>, VolumeError> {
    let derived = derive(&slot.kdf, &slot.id, pass, slot.area_key_bytes, work)?;
    let len = slot.key_bytes as u64 * u64::from(slot.stripes);
    let padded = len.div_ceil(512) * 512;
    let mut material = Zeroizing::new(read_vec(src, slot.area_offset, padded, 512 * 1024)?);
    let cipher = SectorCipher::new(&slot.area_cipher, &derived)?;
    for (i, sector) in material.chunks_exact_mut(512).enumerate() {
        cipher.decrypt_sector(i as u64, sector);
    }
    let key = af_merge(
        &material[..len as usize],
        slot.key_bytes,
        slot.stripes,
        &slot.af_hash,
    )?;
    for d in &p.digests {
        if !d.keyslots.is_empty() && !d.keyslots.contains(&slot.id) {
            continue;
        }
        let kdf = Kdf::Pbkdf2 {
            hash: d.hash.clone(),
            iterations: d.iterations,
            salt: d.salt.clone(),
        };
        let check = derive(&kdf, "digest", &key, d.digest.len(), work)?;
        if check.as_slice() == d.digest.as_slice() {
            return Ok(Some(key));
        }
    }
    Ok(None)
}

/// Runs a KDF, refusing costs above the per-slot limits, or above what is left of the
/// job's work budget, with a typed error before any time is spent.
fn derive(
    kdf: &Kdf,
    slot: &str,
    pass: &[u8],
    len: usize,
    work: &Work,
) -> Result<Zeroizing<Vec<u8>>, VolumeError> {
    let cost = |what, value: u32, limit: u32| {
        if value > limit {
            Err(VolumeError::KdfCost {
                slot: slot.to_string(),
                what,
                value: value.into(),
                limit: limit.into(),
            })
        } else {
            Ok(())
        }
    };
    let mut out = Zeroizing::new(vec![0u8; len]);
    match kdf {
        Kdf::Pbkdf2 {
            hash,
            iterations,
            salt,
        } => {
            cost(
                "PBKDF2 iterations",
                *iterations,
                header::MAX_PBKDF2_ITERATIONS,
            )?;
            let it = (*iterations).max(1);
            let block = if hash == "sha512" { 64 } else { 32 };
            let rounds = u64::from(it) * len.div_ceil(block).max(1) as u64;
            charge(work, slot, rounds)?;
            match hash.as_str() {
                "sha1" => pbkdf2::pbkdf2::<Hmac<Sha1>>(pass, salt, it, &mut out),
                "sha256" => pbkdf2::pbkdf2::<Hmac<Sha256>>(pass, salt, it, &mut out),
                "sha512" => pbkdf2::pbkdf2::<Hmac<Sha512>>(pass, salt, it, &mut out),
                other => return Err(VolumeError::Luks(format!("PBKDF2 hash {other}"))),
            }
            .map_err(|_| VolumeError::Luks("PBKDF2 parameters".into()))?;
        }
        Kdf::Argon2 {
            variant,
            time,
            memory_kib,
            lanes,
            salt,
        } => {
            cost(
                "Argon2 memory (KiB)",
                *memory_kib,
                header::MAX_ARGON2_MEMORY_KIB,
            )?;
            cost("Argon2 time", *time, header::MAX_ARGON2_TIME)?;
            cost("Argon2 lanes", *lanes, header::MAX_ARGON2_LANES)?;
            charge(work, slot, u64::from(*memory_kib) * u64::from(*time))?;
            let alg = if variant == "argon2i" {
                argon2::Algorithm::Argon2i
            } else {
                argon2::Algorithm::Argon2id
            };
            let params =
                argon2::Params::new(*memory_kib, *time, *lanes, Some(len)).map_err(|e| {
                    VolumeError::Luks(format!("key slot {slot}: Argon2 parameters: {e}"))
                })?;
            argon2::Argon2::new(alg, argon2::Version::V0x13, params)
                .hash_password_into(pass, salt, &mut out)
                .map_err(|e| VolumeError::Luks(format!("key slot {slot}: Argon2: {e}")))?;
        }
    }
    Ok(out)
}

/// Pays for `rounds` KDF rounds; a refusal leaves the budget as it was, so one absurd
/// slot does not starve the rest of the job.
fn charge(work: &Work, slot: &str, rounds: u64) -> Result<(), VolumeError> {
    work.charge_if_within(rounds.div_ceil(KDF_UNIT).max(1))
        .map_err(|stop| VolumeError::KdfBudget {
            slot: slot.to_string(),
            stop,
        })
}

/// The anti-forensic merge: the key is the XOR of the last stripe with the diffusion of
/// all stripes before it.
fn af_merge(
    material: &[u8],
    key_bytes: usize,
    stripes: u32,
    hash: &str,
) -> Result<Zeroizing<Vec<u8>>, VolumeError> {
    let mut d = Zeroizing::new(vec![0u8; key_bytes]);
    let mut chunks = material.chunks_exact(key_bytes);
    for _ in 1..stripes {
        let s = chunks
            .next()
            .ok_or_else(|| VolumeError::Luks("short key material".into()))?;
        for (x, y) in d.iter_mut().zip(s) {
            *x ^= y;
        }
        diffuse(&mut d, hash)?;
    }
    let last = chunks
        .next()
        .ok_or_else(|| VolumeError::Luks("short key material".into()))?;
    for (x, y) in d.iter_mut().zip(last) {
        *x ^= y;
    }
    Ok(d)
}

/// Hashes each digest-sized block of `d` with its big-endian index prepended.
fn diffuse(d: &mut [u8], hash: &str) -> Result<(), VolumeError> {
    fn run<H: Digest>(d: &mut [u8]) {
        let size = <H as Digest>::output_size();
        for (i, block) in d.chunks_mut(size).enumerate() {
            let mut h = H::new();
            h.update((i as u32).to_be_bytes());
            h.update(&*block);
            let out = h.finalize();
            block.copy_from_slice(&out[..block.len()]);
        }
    }
    match hash {
        "sha1" => run::<Sha1>(d),
        "sha256" => run::<Sha256>(d),
        "sha512" => run::<Sha512>(d),
        other => return Err(VolumeError::Luks(format!("anti-forensic hash {other}"))),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absurd_kdf_costs_are_refused_before_running() {
        let kdf = Kdf::Argon2 {
            variant: "argon2id".into(),
            time: 4,
            memory_kib: u32::MAX,
            lanes: 4,
            salt: vec![0; 32],
        };
        assert!(matches!(
            derive(&kdf, "0", b"pw", 64, &Work::unlimited()),
            Err(VolumeError::KdfCost { .. })
        ));
        let kdf = Kdf::Pbkdf2 {
            hash: "sha256".into(),
            iterations: u32::MAX,
            salt: vec![0; 32],
        };
        assert!(matches!(
            derive(&kdf, "0", b"pw", 64, &Work::unlimited()),
            Err(VolumeError::KdfCost { .. })
        ));
    }

    #[test]
    fn kdf_work_is_charged_and_a_slot_past_the_budget_is_refused_unrun() {
        let kdf = Kdf::Pbkdf2 {
            hash: "sha256".into(),
            iterations: 4000,
            salt: vec![0; 32],
        };
        // 64 bytes of sha256 output: two blocks of 4000 iterations, 2000 units.
        let work = Work::new(3000, None);
        derive(&kdf, "0", b"pw", 64, &work).unwrap();
        assert_eq!(work.done(), 2000);
        let err = derive(&kdf, "1", b"pw", 64, &work).err().unwrap();
        assert!(matches!(err, VolumeError::KdfBudget { .. }), "{err}");
        assert_eq!(work.done(), 2000, "a refused slot is not charged");
        let argon = Kdf::Argon2 {
            variant: "argon2id".into(),
            time: 2,
            memory_kib: 2000,
            lanes: 1,
            salt: vec![0; 16],
        };
        // 4000 KiB-passes: 1000 units, which still fit.
        derive(&argon, "2", b"pw", 32, &work).unwrap();
        assert_eq!(work.done(), 3000);
    }

    #[test]
    fn keys_debug_hides_the_passphrases() {
        let keys = LuksKeys {
            named: vec![("u".into(), Zeroizing::new(b"secret".to_vec()))],
            any: vec![Zeroizing::new(b"hunter2".to_vec())],
        };
        let s = format!("{keys:?}");
        assert!(!s.contains("secret") && !s.contains("hunter2"), "{s}");
    }

    #[test]
    fn af_merge_of_one_stripe_is_the_stripe() {
        let m = [7u8; 32];
        assert_eq!(af_merge(&m, 32, 1, "sha256").unwrap().as_slice(), &m);
        assert!(af_merge(&m, 32, 2, "sha256").is_err());
    }
}
