//! A remote image read with HTTP range requests: the byte source under every image format
//! when a job names `image.url` instead of `image.path`.
//!
//! This is the *fetching* side and runs only in trusted code: the worker's parent process
//! (or the CLI's fetch thread, started before its sandbox). The inspection itself never
//! gets a socket: it asks for bytes through [`super::remote`].
//!
//! Inspection reads a few MiB of a many-GiB image, so we fetch only what is read, in
//! aligned blocks kept in a per-job LRU cache (bounded in bytes), with read-ahead when
//! reads run sequentially. A server that ignores `Range` (200 instead of 206) or answers
//! another range than asked is an error, never a whole download. The object's ETag and
//! Last-Modified are pinned by the first response, so an image replaced during the job
//! fails the job instead of mixing two versions. Redirects are followed by hand, each hop
//! checked against the allow-list. The query of a URL (a pre-signed URL's credentials) is
//! sent, never shown: errors carry [`RemoteUrl::redacted`].

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::http_url::{AllowList, RemoteUrl};
pub use crate::inspect::http_error::HttpError;
use crate::inspect::source::{check_range, CancelFlag, ReadAt, ReadError};

/// Cache block: reads are fetched in aligned blocks of this size.
pub const BLOCK_SIZE: u64 = 256 * 1024;
/// Default cache cap per job.
pub const DEFAULT_CACHE_BYTES: u64 = 64 * 1024 * 1024;
/// Largest read-ahead run (blocks fetched by one request).
const MAX_RUN_BLOCKS: u64 = 16;
/// Redirect hops followed per request.
const MAX_REDIRECTS: usize = 5;
/// Largest header value we keep (ETag, Last-Modified).
const MAX_VALIDATOR: usize = 256;

/// Worker-wide settings of remote images: the allow-list, the HTTP agent (TLS roots,
/// timeouts) and the limits of each job.
pub struct RemoteConfig {
    pub allow: AllowList,
    agent: ureq::Agent,
    /// Cache cap per job, in bytes.
    pub cache_bytes: u64,
    /// Requests in flight at once per job.
    pub max_inflight: usize,
    /// Attempts after the first, on transient failures.
    pub retries: u32,
    /// First backoff; doubles on each retry.
    pub backoff: Duration,
    /// Counters of bytes and requests (`guestkit_remote_*_total`).
    pub metrics: Option<(prometheus::IntCounter, prometheus::IntCounter)>,
}

impl std::fmt::Debug for RemoteConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteConfig")
            .field("allow", &self.allow)
            .field("cache_bytes", &self.cache_bytes)
            .finish_non_exhaustive()
    }
}

impl RemoteConfig {
    /// Builds the agent: the system's roots plus the PEM certificates of `ca_file`,
    /// `timeout` for each request (connect, headers and body together, so a server that
    /// trickles bytes cannot hold a job).
    pub fn new(
        allow: &[String],
        ca_file: Option<&Path>,
        timeout: Duration,
    ) -> Result<RemoteConfig, HttpError> {
        use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig};
        let tls = |message: String| HttpError::Tls { message };
        let mut roots: Vec<Certificate<'static>> = rustls_native_certs::load_native_certs()
            .certs
            .iter()
            .map(|c| Certificate::from_der(c.as_ref()).to_owned())
            .collect();
        if let Some(ca) = ca_file {
            let pem = std::fs::read(ca).map_err(|e| tls(format!("{}: {e}", ca.display())))?;
            let before = roots.len();
            for item in ureq::tls::parse_pem(&pem) {
                if let PemItem::Certificate(c) =
                    item.map_err(|e| tls(format!("{}: {e}", ca.display())))?
                {
                    roots.push(c);
                }
            }
            if roots.len() == before {
                return Err(tls(format!("{}: no certificate found", ca.display())));
            }
        }
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_global(Some(timeout))
            .timeout_connect(Some(timeout.min(Duration::from_secs(10))))
            .user_agent(concat!("guestkit-worker/", env!("CARGO_PKG_VERSION")))
            .tls_config(
                TlsConfig::builder()
                    .root_certs(RootCerts::Specific(Arc::new(roots)))
                    .build(),
            )
            .build();
        Ok(RemoteConfig {
            allow: AllowList::new(allow)?,
            agent: config.into(),
            cache_bytes: DEFAULT_CACHE_BYTES,
            max_inflight: 4,
            retries: 4,
            backoff: Duration::from_millis(100),
            metrics: None,
        })
    }

    /// Checks `url` against the allow-list, before anything is fetched.
    pub fn check(&self, url: &RemoteUrl) -> Result<(), HttpError> {
        if self.allow.allows(url) {
            Ok(())
        } else {
            Err(HttpError::NotAllowed {
                url: url.redacted(),
            })
        }
    }
}

/// A job's remote image: its URL (with the query, to request it) and the worker's
/// settings. `Debug` shows the URL without its query.
#[derive(Clone)]
pub struct RemoteTarget {
    pub url: RemoteUrl,
    pub config: Arc<RemoteConfig>,
}

impl std::fmt::Debug for RemoteTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RemoteTarget({})", self.url.redacted())
    }
}

/// Bytes and requests of one job, for the report and the benchmarks.
#[derive(Debug, Default)]
pub struct RemoteStats {
    pub bytes: AtomicU64,
    pub requests: AtomicU64,
}

/// What all remote sources of one job share: the cache (one cap for the whole backing
/// chain), the request slots and the counters.
pub struct RemoteJob {
    config: Arc<RemoteConfig>,
    pub stats: RemoteStats,
    cache: Mutex<Lru>,
    slots: (Mutex<usize>, Condvar),
    next_id: AtomicU64,
    cancel: Option<CancelFlag>,
}

impl RemoteJob {
    pub fn new(config: Arc<RemoteConfig>, cancel: Option<CancelFlag>) -> Arc<RemoteJob> {
        Arc::new(RemoteJob {
            cache: Mutex::new(Lru::new(config.cache_bytes)),
            config,
            stats: RemoteStats::default(),
            slots: (Mutex::new(0), Condvar::new()),
            next_id: AtomicU64::new(0),
            cancel,
        })
    }

    pub fn config(&self) -> &RemoteConfig {
        &self.config
    }

    fn acquire(&self) {
        let (lock, cv) = &self.slots;
        let mut n = lock.lock().unwrap_or_else(|e| e.into_inner());
        while *n >= self.config.max_inflight.max(1) {
            n = cv.wait(n).unwrap_or_else(|e| e.into_inner());
        }
        *n += 1;
    }

    fn release(&self) {
        let (lock, cv) = &self.slots;
        *lock.lock().unwrap_or_else(|e| e.into_inner()) -= 1;
        cv.notify_one();
    }

    fn cancelled(&self) -> bool {
        self.cancel
            .as_ref()
            .is_some_and(|c| c.load(Ordering::Relaxed))
    }

    /// Sleeps `wait` (a retry's backoff) in short steps, so a cancelled job stops at once.
    fn sleep(&self, wait: Duration) -> Result<(), HttpError> {
        let step = Duration::from_millis(20);
        let mut left = wait;
        while !left.is_zero() {
            if self.cancelled() {
                return Err(HttpError::Cancelled);
            }
            let now = left.min(step);
            std::thread::sleep(now);
            left -= now;
        }
        Ok(())
    }
}

/// A cached block: (source id, block index).
type BlockKey = (u64, u64);

/// Blocks of all sources of a job, least recently used evicted first.
struct Lru {
    cap: u64,
    used: u64,
    tick: u64,
    /// Each block with the tick of its last use.
    blocks: HashMap<BlockKey, (Arc<Vec<u8>>, u64)>,
    order: BTreeMap<u64, BlockKey>,
}

impl Lru {
    fn new(cap: u64) -> Lru {
        Lru {
            cap,
            used: 0,
            tick: 0,
            blocks: HashMap::new(),
            order: BTreeMap::new(),
        }
    }

    fn get(&mut self, key: (u64, u64)) -> Option<Arc<Vec<u8>>> {
        self.tick += 1;
        let tick = self.tick;
        let (data, t) = self.blocks.get_mut(&key)?;
        self.order.remove(t);
        *t = tick;
        self.order.insert(tick, key);
        Some(data.clone())
    }

    fn put(&mut self, key: (u64, u64), data: Arc<Vec<u8>>) {
        self.tick += 1;
        let len = data.len() as u64;
        if let Some((old, t)) = self.blocks.insert(key, (data, self.tick)) {
            self.order.remove(&t);
            self.used -= old.len() as u64;
        }
        self.order.insert(self.tick, key);
        self.used += len;
        while self.used > self.cap {
            let Some((_, victim)) = self.order.pop_first() else {
                break;
            };
            if let Some((old, _)) = self.blocks.remove(&victim) {
                self.used -= old.len() as u64;
            }
        }
    }
}

/// The validators pinned by the first response.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Pinned {
    etag: Option<String>,
    last_modified: Option<String>,
}

/// One remote object as a [`ReadAt`].
pub struct HttpSource {
    job: Arc<RemoteJob>,
    id: u64,
    /// Where requests go: the URL given, or where its redirects led.
    url: Mutex<RemoteUrl>,
    /// The URL as named (before redirects): names stored in the image resolve next to it.
    named: RemoteUrl,
    shown: String,
    size: u64,
    pinned: Pinned,
    /// Where the last read ended and how many bytes the reads before it read back to
    /// back: read-ahead fetches at most that much more, so a sequential stream is
    /// fetched in growing runs while a scattered one fetches only what it reads.
    stream: Mutex<(u64, u64)>,
}

impl HttpSource {
    /// Checks `url` against the allow-list, then reads its first block: the size comes
    /// from that response's `Content-Range`, and its validators are pinned.
    pub fn open(job: Arc<RemoteJob>, url: RemoteUrl) -> Result<HttpSource, HttpError> {
        job.config.check(&url)?;
        let id = job.next_id.fetch_add(1, Ordering::Relaxed);
        let shown = url.redacted();
        let mut src = HttpSource {
            job,
            id,
            named: url.clone(),
            url: Mutex::new(url),
            shown,
            size: u64::MAX,
            pinned: Pinned {
                etag: None,
                last_modified: None,
            },
            stream: Mutex::new((u64::MAX, 0)),
        };
        let (first, size, pinned) = src.fetch_retrying(0, BLOCK_SIZE, None)?;
        src.size = size;
        src.pinned = pinned;
        src.job
            .cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .put((id, 0), Arc::new(first));
        Ok(src)
    }

    /// The URL without its query.
    pub fn shown(&self) -> &str {
        &self.shown
    }

    /// The URL as named, with its query (to resolve relative names against).
    pub fn named(&self) -> &RemoteUrl {
        &self.named
    }

    /// Reads `buf.len()` bytes at `offset` through the job's block cache.
    pub fn read(&self, offset: u64, buf: &mut [u8]) -> Result<(), HttpError> {
        let bad = || HttpError::Channel {
            message: format!("read of {} bytes at {offset} past the end", buf.len()),
        };
        let end = offset.checked_add(buf.len() as u64).ok_or_else(bad)?;
        if end > self.size {
            return Err(bad());
        }
        if buf.is_empty() {
            return Ok(());
        }
        let last = (end - 1) / BLOCK_SIZE;
        let streamed = {
            let mut stream = self.stream.lock().unwrap_or_else(|e| e.into_inner());
            let before = if stream.0 == offset { stream.1 } else { 0 };
            *stream = (end, before.saturating_add(buf.len() as u64));
            before
        };
        let ahead = (streamed / BLOCK_SIZE).min(MAX_RUN_BLOCKS);
        let mut done = 0usize;
        while done < buf.len() {
            let at = offset + done as u64;
            let index = at / BLOCK_SIZE;
            let block = self.block(index, last.saturating_add(ahead))?;
            let within = (at - index * BLOCK_SIZE) as usize;
            let n = (block.len().saturating_sub(within)).min(buf.len() - done);
            if n == 0 {
                return Err(HttpError::ShortBody {
                    url: self.shown.clone(),
                    expected: BLOCK_SIZE,
                    got: block.len() as u64,
                });
            }
            buf[done..done + n].copy_from_slice(&block[within..within + n]);
            done += n;
        }
        Ok(())
    }

    /// Streams the whole object through sha256, in range requests that bypass the
    /// cache (a full read: only when the job asks for a checksum).
    pub fn sha256(&self) -> Result<String, HttpError> {
        let mut hasher = Sha256::new();
        let step = BLOCK_SIZE * MAX_RUN_BLOCKS;
        let mut at = 0;
        while at < self.size {
            let len = step.min(self.size - at);
            let (data, _, _) = self.fetch_retrying(at, len, Some(&self.pinned))?;
            hasher.update(&data);
            at += len;
        }
        Ok(hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect())
    }

    /// Fetches `[start, start + len)` with retries and exponential backoff on transient
    /// failures.
    fn fetch_retrying(
        &self,
        start: u64,
        len: u64,
        pinned: Option<&Pinned>,
    ) -> Result<(Vec<u8>, u64, Pinned), HttpError> {
        let mut attempt = 0;
        loop {
            if self.job.cancelled() {
                return Err(HttpError::Cancelled);
            }
            self.job.acquire();
            let r = self.fetch_once(start, len, pinned);
            self.job.release();
            match r {
                Err(e) if e.transient() && attempt < self.job.config.retries => {
                    let wait = self.job.config.backoff * 2u32.pow(attempt.min(6));
                    tracing::debug!(url = %self.shown, error = %e, attempt, "remote read failed, retrying");
                    self.job.sleep(wait)?;
                    attempt += 1;
                }
                r => return r,
            }
        }
    }

    /// One request (following allowed redirects). `pinned` is `None` only for the
    /// first request, whose answer sets the size and the validators.
    fn fetch_once(
        &self,
        start: u64,
        len: u64,
        pinned: Option<&Pinned>,
    ) -> Result<(Vec<u8>, u64, Pinned), HttpError> {
        let mut url = self.url.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let end = start + len - 1;
        let asked = format!("bytes={start}-{end}");
        for _hop in 0..=MAX_REDIRECTS {
            let shown = url.redacted();
            let transport = |e: ureq::Error| HttpError::Transport {
                url: shown.clone(),
                message: describe(&e),
            };
            let mut req = self
                .job
                .config
                .agent
                .get(url.full())
                .header("Range", &asked);
            if let Some(etag) = pinned
                .and_then(|p| p.etag.as_deref())
                .filter(|e| !e.starts_with("W/"))
            {
                req = req.header("If-Match", etag);
            }
            self.job.stats.requests.fetch_add(1, Ordering::Relaxed);
            if let Some((_, requests)) = &self.job.config.metrics {
                requests.inc();
            }
            let resp = req.call().map_err(transport)?;
            let status = resp.status().as_u16();
            let header = |name: &str| {
                resp.headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(|s| s.chars().take(MAX_VALIDATOR).collect::<String>())
            };
            match status {
                301 | 302 | 303 | 307 | 308 => {
                    let location = header("location").ok_or_else(|| HttpError::Redirect {
                        url: shown.clone(),
                        message: format!("status {status} without Location"),
                    })?;
                    let next = url.join(&location).map_err(|e| HttpError::Redirect {
                        url: shown.clone(),
                        message: e.to_string(),
                    })?;
                    if !self.job.config.allow.allows(&next) {
                        return Err(HttpError::Redirect {
                            url: shown.clone(),
                            message: format!("{} is not in the allow-list", next.redacted()),
                        });
                    }
                    url = next;
                    continue;
                }
                206 => {}
                200 => return Err(HttpError::RangeIgnored { url: shown }),
                412 => {
                    return Err(HttpError::Changed {
                        url: shown,
                        message: "If-Match failed".into(),
                    })
                }
                s => {
                    return Err(HttpError::Status {
                        url: shown,
                        status: s,
                    })
                }
            }
            let got = header("content-range").unwrap_or_default();
            let (a, b, size) =
                parse_content_range(&got).ok_or_else(|| HttpError::BadContentRange {
                    url: shown.clone(),
                    asked: asked.clone(),
                    got: got.clone(),
                })?;
            // The first request may ask past the end of a small object; the server then
            // answers up to its last byte.
            let want_end = if pinned.is_none() {
                end.min(size.saturating_sub(1))
            } else {
                end
            };
            if a != start || b != want_end || b >= size || (pinned.is_some() && size != self.size) {
                return Err(HttpError::BadContentRange {
                    url: shown,
                    asked,
                    got,
                });
            }
            let now = Pinned {
                etag: header("etag"),
                last_modified: header("last-modified"),
            };
            if let Some(p) = pinned {
                if *p != now {
                    return Err(HttpError::Changed {
                        url: shown,
                        message: format!(
                            "ETag/Last-Modified {:?}/{:?}, pinned {:?}/{:?}",
                            now.etag, now.last_modified, p.etag, p.last_modified
                        ),
                    });
                }
            }
            let n = b - a + 1;
            if let Some(cl) = header("content-length") {
                if cl.trim().parse::<u64>().ok() != Some(n) {
                    return Err(HttpError::BadContentRange {
                        url: shown,
                        asked,
                        got: format!("{got} with Content-Length {cl}"),
                    });
                }
            }
            // Exactly n bytes are read; a body longer than announced is never drained.
            let mut data = vec![0u8; n as usize];
            let mut reader = resp.into_body().into_with_config().limit(n).reader();
            let mut filled = 0usize;
            while filled < data.len() {
                // Between chunks: a killed inspection stops a slow body here.
                if self.job.cancelled() {
                    return Err(HttpError::Cancelled);
                }
                let chunk = (filled + 64 * 1024).min(data.len());
                match reader.read(&mut data[filled..chunk]) {
                    Ok(0) => break,
                    Ok(k) => filled += k,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        return Err(HttpError::Transport {
                            url: shown,
                            message: format!("reading the body after {filled} bytes: {e}"),
                        })
                    }
                }
            }
            self.job
                .stats
                .bytes
                .fetch_add(filled as u64, Ordering::Relaxed);
            if let Some((bytes, _)) = &self.job.config.metrics {
                bytes.inc_by(filled as u64);
            }
            if (filled as u64) < n {
                return Err(HttpError::ShortBody {
                    url: shown,
                    expected: n,
                    got: filled as u64,
                });
            }
            *self.url.lock().unwrap_or_else(|e| e.into_inner()) = url;
            return Ok((data, size, now));
        }
        Err(HttpError::Redirect {
            url: self.shown.clone(),
            message: format!("more than {MAX_REDIRECTS} redirects"),
        })
    }

    /// The block `index`, from the cache or fetched with the blocks after it up to
    /// `wanted_until` (this read's last block plus its read-ahead).
    fn block(&self, index: u64, wanted_until: u64) -> Result<Arc<Vec<u8>>, HttpError> {
        if let Some(b) = self
            .job
            .cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get((self.id, index))
        {
            return Ok(b);
        }
        let blocks = self.size.div_ceil(BLOCK_SIZE);
        let mut count = (wanted_until.saturating_sub(index) + 1)
            .min(MAX_RUN_BLOCKS)
            .min(blocks - index);
        {
            // Stop the run at the first block already cached.
            let mut cache = self.job.cache.lock().unwrap_or_else(|e| e.into_inner());
            for k in 1..count {
                if cache.get((self.id, index + k)).is_some() {
                    count = k;
                    break;
                }
            }
        }
        let start = index * BLOCK_SIZE;
        let len = (count * BLOCK_SIZE).min(self.size - start);
        let (data, _, _) = self.fetch_retrying(start, len, Some(&self.pinned))?;
        let mut first = None;
        let mut cache = self.job.cache.lock().unwrap_or_else(|e| e.into_inner());
        for (k, chunk) in data.chunks(BLOCK_SIZE as usize).enumerate() {
            let chunk = Arc::new(chunk.to_vec());
            if k == 0 {
                first = Some(chunk.clone());
            }
            cache.put((self.id, index + k as u64), chunk);
        }
        first.ok_or_else(|| HttpError::ShortBody {
            url: self.shown.clone(),
            expected: len,
            got: 0,
        })
    }
}

impl ReadAt for HttpSource {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), ReadError> {
        check_range(offset, buf.len(), self.size)?;
        Ok(self.read(offset, buf)?)
    }
}

/// `bytes a-b/size` (size known; `*` is refused: we need the size).
fn parse_content_range(v: &str) -> Option<(u64, u64, u64)> {
    let rest = v.trim().strip_prefix("bytes ")?;
    let (range, size) = rest.split_once('/')?;
    let (a, b) = range.split_once('-')?;
    let (a, b, size) = (
        a.trim().parse().ok()?,
        b.trim().parse().ok()?,
        size.trim().parse().ok()?,
    );
    (a <= b && b < size).then_some((a, b, size))
}

/// A ureq error in words that cannot carry the URL (ureq's own messages may).
fn describe(e: &ureq::Error) -> String {
    match e {
        ureq::Error::Timeout(t) => format!("timeout ({t:?})"),
        ureq::Error::Io(io) => format!("i/o error: {io}"),
        ureq::Error::HostNotFound => "host not found".into(),
        ureq::Error::ConnectionFailed => "connection failed".into(),
        ureq::Error::Protocol(p) => format!("protocol error: {p}"),
        ureq::Error::Tls(m) => format!("TLS error: {m}"),
        ureq::Error::Rustls(r) => format!("TLS error: {r}"),
        _ => "request failed".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range() {
        assert_eq!(parse_content_range("bytes 0-9/100"), Some((0, 9, 100)));
        assert_eq!(parse_content_range("bytes 0-9/*"), None);
        assert_eq!(parse_content_range("bytes 9-0/100"), None);
        assert_eq!(parse_content_range("bytes 0-100/100"), None);
        assert_eq!(parse_content_range("items 0-9/100"), None);
    }

    #[test]
    fn lru_keeps_to_its_cap() {
        let mut l = Lru::new(10);
        for i in 0..5 {
            l.put((0, i), Arc::new(vec![0; 4]));
        }
        assert!(l.used <= 10);
        assert!(l.get((0, 4)).is_some() && l.get((0, 0)).is_none());
    }
}
