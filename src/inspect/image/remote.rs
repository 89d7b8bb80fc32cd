//! The channel between an inspection and the fetcher of its remote image.
//!
//! An inspection parses hostile bytes, so it runs without network (the isolated child's
//! seccomp filter denies `socket`). The trusted side (the worker's parent process, or
//! the CLI's fetch thread started before its sandbox) holds the HTTP client, the block
//! cache, the allow-list and the URL's credentials; the inspection holds one end of a
//! Unix socket pair and asks for bytes:
//!
//! - `open`: the job's image, or a name stored in an opened image (a backing file, an
//!   extent) that the fetcher resolves next to that image's URL and checks against the
//!   allow-list before any request;
//! - `read`: bytes of an opened image (at most [`MAX_READ`] per call);
//! - `sha256`: the whole object streamed through sha256 by the fetcher;
//! - `stats`: bytes and requests fetched so far (for the report).
//!
//! Frames are a little-endian `u32` length and a body, bounded on both sides: a call is
//! JSON ([`Call`]); an answer is a tag byte, then raw bytes (`read`) or JSON
//! (`Result<Answer, HttpError>`), so errors stay typed across the boundary. The
//! inspection side never learns the URL's query.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use super::http::{HttpError, HttpSource, RemoteJob};
use super::http_url::RemoteUrl;
use crate::inspect::cache::BoundedCache;
use crate::inspect::source::{check_range, ReadAt, ReadError};

/// Largest read one call asks for; longer reads are split.
pub const MAX_READ: u32 = 1 << 20;
/// Largest call frame (JSON with a stored file name).
const MAX_CALL: u32 = 64 * 1024;
/// Largest answer frame: a read, or a JSON answer.
const MAX_ANSWER: u32 = MAX_READ + 64 * 1024;
/// Remote files one job may open (a chain of 16, VMDK extents of a big disk).
const MAX_FILES: usize = 256;

/// Small reads are answered from aligned blocks of this size kept on the inspection's
/// side: a filesystem reads the same metadata block in many small pieces, and each
/// call crosses the socket to the fetcher and back, which costs more than the bytes.
const CLIENT_BLOCK: u64 = 64 * 1024;
/// Blocks kept on the inspection's side (16 MiB): the cache is cleared when full.
const CLIENT_BLOCKS: usize = 256;
const TAG_DATA: u8 = 0;
const TAG_JSON: u8 = 1;

/// What the inspection asks for.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "call", rename_all = "snake_case")]
pub enum Call {
    /// `base: None`: the job's image. Else `name` next to the opened file `base`.
    Open {
        base: Option<u32>,
        name: String,
    },
    Read {
        id: u32,
        offset: u64,
        len: u32,
    },
    Sha256 {
        id: u32,
    },
    Stats,
}

/// The fetcher's non-data answers.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "answer", rename_all = "snake_case")]
pub enum Answer {
    Opened { id: u32, size: u64, shown: String },
    Sha256 { hex: String },
    Stats { bytes: u64, requests: u64 },
}

fn channel(message: impl Into<String>) -> HttpError {
    HttpError::Channel {
        message: message.into(),
    }
}

/// Writes one frame: the length of all `parts`, then the parts.
pub(crate) fn write_frame(to: &mut impl Write, parts: &[&[u8]]) -> std::io::Result<()> {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    let len = u32::try_from(len).map_err(std::io::Error::other)?;
    to.write_all(&len.to_le_bytes())?;
    for p in parts {
        to.write_all(p)?;
    }
    to.flush()
}

/// Reads one frame of at most `cap` bytes; `None` at a clean end of the stream.
pub(crate) fn read_frame(from: &mut impl Read, cap: u32) -> std::io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 4];
    match from.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_le_bytes(len);
    if len > cap {
        return Err(std::io::Error::other(format!(
            "frame of {len} bytes over the cap of {cap}"
        )));
    }
    let mut body = vec![0u8; len as usize];
    from.read_exact(&mut body)?;
    Ok(Some(body))
}

/// The fetcher's loop: answers the calls arriving on `stream` until the inspection
/// closes its end (it ended or was killed) or the job is cancelled. `top` is the job's
/// image; every other URL is derived from an opened one and checked by the allow-list.
pub fn serve(mut stream: UnixStream, job: Arc<RemoteJob>, top: RemoteUrl) {
    let mut files: Vec<HttpSource> = Vec::new();
    let mut by_url: HashMap<String, u32> = HashMap::new();
    let mut buf = Vec::new();
    loop {
        let frame = match read_frame(&mut stream, MAX_CALL) {
            Ok(Some(f)) => f,
            Ok(None) => return,
            Err(e) => {
                tracing::debug!(error = %e, "remote channel closed");
                return;
            }
        };
        let answer = match serde_json::from_slice::<Call>(&frame) {
            Err(e) => Err(channel(format!("unreadable call: {e}"))),
            Ok(Call::Read { id, offset, len }) => match files.get(id as usize) {
                None => Err(channel(format!("no open file {id}"))),
                Some(_) if len > MAX_READ => Err(channel(format!("read of {len} bytes"))),
                Some(f) => {
                    buf.resize(len as usize, 0);
                    match f.read(offset, &mut buf) {
                        Ok(()) => {
                            if write_frame(&mut stream, &[&[TAG_DATA], &buf]).is_err() {
                                return;
                            }
                            continue;
                        }
                        Err(e) => Err(e),
                    }
                }
            },
            Ok(Call::Open { base, name }) => open(&job, &top, &mut files, &mut by_url, base, &name),
            Ok(Call::Sha256 { id }) => match files.get(id as usize) {
                None => Err(channel(format!("no open file {id}"))),
                Some(f) => f.sha256().map(|hex| Answer::Sha256 { hex }),
            },
            Ok(Call::Stats) => Ok(Answer::Stats {
                bytes: job.stats.bytes.load(std::sync::atomic::Ordering::Relaxed),
                requests: job
                    .stats
                    .requests
                    .load(std::sync::atomic::Ordering::Relaxed),
            }),
        };
        let json = match serde_json::to_vec(&answer) {
            Ok(j) => j,
            Err(_) => return,
        };
        if write_frame(&mut stream, &[&[TAG_JSON], &json]).is_err() {
            return;
        }
    }
}

/// Opens the job's image or a name next to an opened file; the same URL twice gives the
/// same id (so the inspection's loop check sees it).
fn open(
    job: &Arc<RemoteJob>,
    top: &RemoteUrl,
    files: &mut Vec<HttpSource>,
    by_url: &mut HashMap<String, u32>,
    base: Option<u32>,
    name: &str,
) -> Result<Answer, HttpError> {
    let url = match base {
        None => top.clone(),
        Some(b) => files
            .get(b as usize)
            .ok_or_else(|| channel(format!("no open file {b}")))?
            .named()
            .join(name)?,
    };
    let shown = url.redacted();
    if let Some(&id) = by_url.get(&url.full()) {
        let size = files[id as usize].size();
        return Ok(Answer::Opened { id, size, shown });
    }
    if files.len() >= MAX_FILES {
        return Err(channel(format!("more than {MAX_FILES} remote files")));
    }
    // Checked before any request (HttpSource::open checks again).
    job.config().check(&url)?;
    let src = HttpSource::open(job.clone(), url.clone())?;
    let id = files.len() as u32;
    let size = src.size();
    // Host and path only: the query never reaches a log.
    tracing::debug!(url = %shown, id, size, "remote image opened");
    files.push(src);
    by_url.insert(url.full(), id);
    Ok(Answer::Opened { id, size, shown })
}

/// The inspection's end of the channel. Calls are made one at a time (the lock), so
/// answers never interleave.
pub struct RemoteClient {
    stream: Mutex<UnixStream>,
    /// (file id, block index) -> the block, for reads shorter than a few blocks.
    blocks: BoundedCache<(u32, u64), Arc<Vec<u8>>>,
}

impl std::fmt::Debug for RemoteClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RemoteClient")
    }
}

impl RemoteClient {
    pub fn new(stream: UnixStream) -> Arc<RemoteClient> {
        Arc::new(RemoteClient {
            stream: Mutex::new(stream),
            blocks: BoundedCache::new(CLIENT_BLOCKS),
        })
    }

    /// One call and its answer; `into` receives the bytes of a data answer.
    fn call(&self, call: &Call, into: Option<&mut [u8]>) -> Result<Option<Answer>, HttpError> {
        let json = serde_json::to_vec(call).map_err(|e| channel(e.to_string()))?;
        let mut stream = self.stream.lock().unwrap_or_else(|e| e.into_inner());
        let lost = |e: std::io::Error| channel(format!("the fetcher is gone: {e}"));
        write_frame(&mut *stream, &[&json]).map_err(lost)?;
        let frame = read_frame(&mut *stream, MAX_ANSWER)
            .map_err(lost)?
            .ok_or_else(|| channel("the fetcher closed the channel"))?;
        match (frame.split_first(), into) {
            (Some((&TAG_DATA, data)), Some(buf)) if data.len() == buf.len() => {
                buf.copy_from_slice(data);
                Ok(None)
            }
            (Some((&TAG_JSON, json)), _) => {
                serde_json::from_slice::<Result<Answer, HttpError>>(json)
                    .map_err(|e| channel(format!("unreadable answer: {e}")))?
                    .map(Some)
            }
            _ => Err(channel("unexpected answer")),
        }
    }

    /// Opens the job's image (`base: None`) or `name` next to the file `base`.
    pub fn open(&self, base: Option<u32>, name: &str) -> Result<(u32, u64, String), HttpError> {
        match self.call(
            &Call::Open {
                base,
                name: name.to_string(),
            },
            None,
        )? {
            Some(Answer::Opened { id, size, shown }) => Ok((id, size, shown)),
            _ => Err(channel("unexpected answer to open")),
        }
    }

    /// Hex sha256 of the whole object `id` (a full read, by the fetcher).
    pub fn sha256(&self, id: u32) -> Result<String, HttpError> {
        match self.call(&Call::Sha256 { id }, None)? {
            Some(Answer::Sha256 { hex }) => Ok(hex),
            _ => Err(channel("unexpected answer to sha256")),
        }
    }

    /// Bytes and requests fetched for the job so far.
    pub fn stats(&self) -> Result<(u64, u64), HttpError> {
        match self.call(&Call::Stats, None)? {
            Some(Answer::Stats { bytes, requests }) => Ok((bytes, requests)),
            _ => Err(channel("unexpected answer to stats")),
        }
    }

    fn read(&self, id: u32, offset: u64, buf: &mut [u8]) -> Result<(), HttpError> {
        let mut done = 0;
        for piece in buf.chunks_mut(MAX_READ as usize) {
            let len = piece.len() as u32;
            let offset = offset + done;
            if let Some(a) = self.call(&Call::Read { id, offset, len }, Some(piece))? {
                return Err(channel(format!("unexpected answer to read: {a:?}")));
            }
            done += u64::from(len);
        }
        Ok(())
    }
}

/// One opened remote file, read through the channel.
pub struct RemoteFile {
    client: Arc<RemoteClient>,
    id: u32,
    size: u64,
}

impl RemoteFile {
    pub fn new(client: Arc<RemoteClient>, id: u32, size: u64) -> RemoteFile {
        RemoteFile { client, id, size }
    }
}

impl ReadAt for RemoteFile {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), ReadError> {
        check_range(offset, buf.len(), self.size)?;
        if buf.is_empty() {
            return Ok(());
        }
        // A large read is one call anyway, and caching it would only evict blocks.
        if buf.len() as u64 >= 4 * CLIENT_BLOCK {
            return Ok(self.client.read(self.id, offset, buf)?);
        }
        let mut done = 0usize;
        while done < buf.len() {
            let at = offset + done as u64;
            let index = at / CLIENT_BLOCK;
            let block = self.client.blocks.get_or_load((self.id, index), || {
                let start = index * CLIENT_BLOCK;
                let mut block = vec![0u8; CLIENT_BLOCK.min(self.size - start) as usize];
                self.client
                    .read(self.id, start, &mut block)
                    .map(|()| Arc::new(block))
            })?;
            let within = (at - index * CLIENT_BLOCK) as usize;
            let n = (block.len() - within).min(buf.len() - done);
            buf[done..done + n].copy_from_slice(&block[within..within + n]);
            done += n;
        }
        Ok(())
    }
}

/// A fetcher on a thread of this process: the CLI (started before its sandbox, whose
/// filters then bind only the inspecting thread), the tests and the benchmarks. The
/// thread ends when the returned client is dropped.
pub fn serve_in_thread(
    job: Arc<RemoteJob>,
    top: RemoteUrl,
) -> std::io::Result<(Arc<RemoteClient>, std::thread::JoinHandle<()>)> {
    let (ours, theirs) = UnixStream::pair()?;
    let handle = std::thread::Builder::new()
        .name("remote-fetch".into())
        .spawn(move || serve(theirs, job, top))?;
    Ok((RemoteClient::new(ours), handle))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_bounded() {
        let mut wire = Vec::new();
        write_frame(&mut wire, &[b"ab", b"c"]).unwrap();
        assert_eq!(
            read_frame(&mut &wire[..], 3).unwrap().as_deref(),
            Some(&b"abc"[..])
        );
        assert!(read_frame(&mut &wire[..], 2).is_err(), "over the cap");
        assert!(read_frame(&mut &wire[..5], 3).is_err(), "cut short");
        assert!(read_frame(&mut &[][..], 3).unwrap().is_none(), "clean end");
    }

    #[test]
    fn hostile_calls_get_typed_errors() {
        let cfg = Arc::new(
            super::super::http::RemoteConfig::new(
                &["http://127.0.0.1:9/x/".into()],
                None,
                std::time::Duration::from_secs(1),
            )
            .unwrap(),
        );
        let job = RemoteJob::new(cfg, None);
        let top = RemoteUrl::parse("http://127.0.0.1:9/x/a").unwrap();
        let (client, handle) = serve_in_thread(job, top).unwrap();
        let mut buf = [0u8; 4];
        let e = client.read(7, 0, &mut buf).unwrap_err();
        assert_eq!(e.kind(), "remote_channel", "{e}");
        let e = client.open(Some(3), "b").unwrap_err();
        assert_eq!(e.kind(), "remote_channel", "{e}");
        assert_eq!(client.stats().unwrap(), (0, 0));
        // A garbage frame: answered with an error, the fetcher keeps serving.
        {
            let mut s = client.stream.lock().unwrap();
            write_frame(&mut *s, &[b"{not json"]).unwrap();
            let f = read_frame(&mut *s, MAX_ANSWER).unwrap().unwrap();
            assert_eq!(f[0], TAG_JSON);
        }
        assert_eq!(client.stats().unwrap(), (0, 0));
        drop(client);
        handle.join().unwrap();
    }
}
