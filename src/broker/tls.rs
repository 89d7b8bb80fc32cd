//! TLS to the broker: a private CA for the broker's certificate and an optional client
//! certificate, read from PEM files (`--ca-file`, `--tls-cert`, `--tls-key`).
//!
//! Whether TLS is used at all is the URL's scheme (`amqps://`). TLS files with an
//! `amqp://` URL are refused rather than ignored: someone who mounted a CA expects an
//! encrypted connection, and connecting in plain text instead would hide the mistake.
//! The CA is added to the system's roots (lapin's rustls with native roots); the broker's
//! name is checked against the URL's host.

use std::path::{Path, PathBuf};

use lapin::tcp::{OwnedIdentity, OwnedTLSConfig};
use lapin::uri::{AMQPScheme, AMQPUri};

/// Why the TLS settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {what} {}: {source}", path.display())]
    Read {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{what} {} holds no PEM certificate (-----BEGIN CERTIFICATE-----)", path.display())]
    NoCertificate { what: &'static str, path: PathBuf },
    #[error("--tls-key {} holds no PEM private key (PKCS#8, PKCS#1 or SEC1)", path.display())]
    NoKey { path: PathBuf },
    #[error("--tls-cert and --tls-key must be given together")]
    HalfIdentity,
    #[error(
        "--ca-file/--tls-cert/--tls-key need an amqps:// URL; refusing to talk to the \
         broker in plain text"
    )]
    PlainUrl,
    #[error("invalid broker URL: {0}")]
    Url(String),
}

/// The TLS files of the command line.
#[derive(Debug, Clone, Copy, Default)]
pub struct TlsFiles<'a> {
    pub ca_file: Option<&'a Path>,
    pub cert: Option<&'a Path>,
    pub key: Option<&'a Path>,
}

/// Reads and checks the files for `url`; an empty config (system roots, no client
/// certificate) when none is given.
pub fn load(url: &str, files: TlsFiles<'_>) -> Result<OwnedTLSConfig, TlsError> {
    let uri: AMQPUri = url.parse().map_err(TlsError::Url)?;
    let any = files.ca_file.is_some() || files.cert.is_some() || files.key.is_some();
    if !any {
        return Ok(OwnedTLSConfig::default());
    }
    if uri.scheme != AMQPScheme::AMQPS {
        return Err(TlsError::PlainUrl);
    }
    let cert_chain = match files.ca_file {
        Some(path) => Some(certificates("--ca-file", path)?),
        None => None,
    };
    let identity = match (files.cert, files.key) {
        (Some(cert), Some(key)) => {
            let pem = certificates("--tls-cert", cert)?.into_bytes();
            let key_pem = read("--tls-key", key)?;
            if !key_pem.contains("PRIVATE KEY-----") {
                return Err(TlsError::NoKey { path: key.into() });
            }
            Some(OwnedIdentity::PKCS8 {
                pem,
                key: key_pem.into_bytes(),
            })
        }
        (None, None) => None,
        _ => return Err(TlsError::HalfIdentity),
    };
    Ok(OwnedTLSConfig {
        identity,
        cert_chain,
    })
}

fn read(what: &'static str, path: &Path) -> Result<String, TlsError> {
    std::fs::read_to_string(path).map_err(|source| TlsError::Read {
        what,
        path: path.into(),
        source,
    })
}

/// A PEM file that must hold at least one certificate: rustls skips what it cannot
/// parse, so an empty or wrong file would otherwise only show as "unknown issuer".
fn certificates(what: &'static str, path: &Path) -> Result<String, TlsError> {
    let pem = read(what, path)?;
    if !pem.contains("-----BEGIN CERTIFICATE-----") {
        return Err(TlsError::NoCertificate {
            what,
            path: path.into(),
        });
    }
    Ok(pem)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_files_no_tls_settings() {
        let cfg = load("amqp://guest:guest@127.0.0.1:5672/%2f", TlsFiles::default()).unwrap();
        assert_eq!(cfg, OwnedTLSConfig::default());
    }

    #[test]
    fn tls_files_with_a_plain_url_are_refused() {
        let dir = std::env::temp_dir();
        let files = TlsFiles {
            ca_file: Some(&dir),
            ..Default::default()
        };
        let err = load("amqp://127.0.0.1:5672/%2f", files).unwrap_err();
        assert!(matches!(err, TlsError::PlainUrl), "{err}");
    }

    #[test]
    fn files_without_pem_content_are_named() {
        let dir = std::env::temp_dir().join(format!("gk-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let url = "amqps://127.0.0.1:5671/%2f";
        let err = load(
            url,
            TlsFiles {
                ca_file: Some(&empty),
                ..Default::default()
            },
        )
        .unwrap_err();
        assert!(err.to_string().contains("--ca-file"), "{err}");
        let err = load(
            url,
            TlsFiles {
                cert: Some(&empty),
                ..Default::default()
            },
        )
        .unwrap_err();
        assert!(matches!(err, TlsError::HalfIdentity), "{err}");
        let missing = dir.join("missing.pem");
        let err = load(
            url,
            TlsFiles {
                ca_file: Some(&missing),
                ..Default::default()
            },
        )
        .unwrap_err();
        assert!(matches!(err, TlsError::Read { .. }), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
