//! The whole inspection of one disk image, layer by layer, into one [`Report`]:
//! image format -> read budget -> partition table -> probe of every partition (or the
//! whole disk) -> ext2/3/4 and vfat opened -> OS roots found and inspected.
//!
//! Only the image and the partition table can fail the job (without them there is
//! nothing to report), and so can the read budget. Everything above is best effort: a
//! partition that cannot be probed, a filesystem that cannot be opened, a config file
//! that cannot be parsed becomes a warning in the report. One exception: damage in the
//! image format itself (a corrupt qcow2 table met while reading some file, an I/O error)
//! fails the job even when an upper layer turned it into a warning, since no fact read
//! from a damaged image can be trusted.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::fs::ext4::Ext4Fs;
use super::fs::probe::{probe, Probed};
use super::fs::vfat::VfatFs;
use super::fs::{FileSystem, FsError};
use super::image::{self, ImageError};
use super::os::{self, Include, Mountable};
use super::partition::{self, PartitionError};
use super::report::{FilesystemInfo, ImageInfo, PartitionInfo, Report, VolumeGroupInfo};
use super::source::{Budgeted, CancelFlag, ReadAt, Slice};
use super::volume::lvm2;

/// Default cap on guest bytes read by one inspection. A full inspection of a typical
/// guest reads tens of MiB; the cap only stops pathological images (or huge package
/// databases, see `os/apps.rs`) from reading without end.
pub const DEFAULT_READ_BUDGET: u64 = 4 * 1024 * 1024 * 1024;

/// The device name of the whole disk; partitions append their number.
const DISK: &str = "/dev/sda";

/// What to inspect and within which limits.
#[derive(Debug, Clone)]
pub struct InspectOptions {
    /// Directories backing files must resolve inside (see `image::open`).
    pub image_roots: Vec<PathBuf>,
    /// The job's `image.format` (a qemu-img name); a different detected format fails.
    pub asserted_format: Option<String>,
    pub include_applications: bool,
    pub include_users: bool,
    pub include_services: bool,
    pub include_network: bool,
    pub include_security: bool,
    /// Most guest (virtual-disk) bytes read before the job fails with
    /// [`InspectError::Budget`].
    pub read_budget: u64,
    /// Set by the worker when the job times out; reads stop at once.
    pub cancel: Option<CancelFlag>,
    /// A remote image (`image.url`): then `path` only names it in messages (the URL
    /// without its query) and the image is read over HTTP.
    pub remote: Option<image::http::RemoteTarget>,
}

impl Default for InspectOptions {
    fn default() -> InspectOptions {
        InspectOptions {
            image_roots: Vec::new(),
            asserted_format: None,
            include_applications: true,
            include_users: true,
            include_services: true,
            include_network: true,
            include_security: true,
            read_budget: DEFAULT_READ_BUDGET,
            cancel: None,
            remote: None,
        }
    }
}

/// Counters of one inspection, for metrics and benchmarks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InspectStats {
    /// Guest (virtual-disk) bytes read through the budget.
    pub bytes_read: u64,
    /// Bytes and requests over HTTP, for a remote image.
    pub remote_bytes: u64,
    pub remote_requests: u64,
}

/// Why an inspection produced no report.
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    /// The image could not be opened or read (format, qcow2 metadata, backing chain).
    #[error("image {path}: {source}")]
    Image {
        path: PathBuf,
        #[source]
        source: ImageError,
    },
    /// The partition table is corrupt beyond recovery.
    #[error("partition table of {path}: {source}")]
    Partition {
        path: PathBuf,
        #[source]
        source: PartitionError,
    },
    /// The job read more guest bytes than its budget allows.
    #[error("inspection of {path} stopped: read budget of {limit} bytes exhausted")]
    Budget { path: PathBuf, limit: u64 },
}

impl InspectError {
    /// Short machine-readable layer name for results and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            InspectError::Image { .. } => "image",
            InspectError::Partition { .. } => "partition",
            InspectError::Budget { .. } => "budget",
        }
    }
}

/// Inspects the image at `path`.
pub fn inspect(path: &Path, opts: &InspectOptions) -> Result<Report, InspectError> {
    inspect_with_stats(path, opts).map(|(report, _)| report)
}

/// Inspects the image at `path` and says how many guest bytes it took.
pub fn inspect_with_stats(
    path: &Path,
    opts: &InspectOptions,
) -> Result<(Report, InspectStats), InspectError> {
    inspect_full(path, opts).map(|i| (i.report, i.stats))
}

/// A finished inspection with the opened devices kept, so a caller (the profile
/// checks) can read more files of each OS after the report is built.
pub struct Inspection {
    pub report: Report,
    pub stats: InspectStats,
    pub devices: Vec<Mountable>,
}

impl Inspection {
    /// The guest's view of one OS of the report: its root and every mountpoint the
    /// report resolved whose filesystem we can read.
    pub fn guest(&self, os: &super::report::OperatingSystem) -> Option<os::GuestFs> {
        let fs_of = |device: &str| {
            self.devices
                .iter()
                .find(|m| m.device == device)
                .and_then(|m| m.fs.clone())
        };
        let mut guest = os::GuestFs::new(fs_of(&os.root)?);
        for (mountpoint, device) in &os.mountpoints {
            if mountpoint != "/" {
                if let Some(fs) = fs_of(device) {
                    guest.mount(mountpoint, fs);
                }
            }
        }
        Some(guest)
    }
}

/// Inspects the image at `path`, keeping the opened devices.
pub fn inspect_full(path: &Path, opts: &InspectOptions) -> Result<Inspection, InspectError> {
    let budget_error = || InspectError::Budget {
        path: path.to_path_buf(),
        limit: opts.read_budget,
    };
    let image_error = |source: ImageError| match source {
        ImageError::BudgetExceeded { .. } => budget_error(),
        source => InspectError::Image {
            path: path.to_path_buf(),
            source,
        },
    };

    let remote_job = opts
        .remote
        .as_ref()
        .map(|r| image::http::RemoteJob::new(r.config.clone(), opts.cancel.clone()));
    let opened = match (&opts.remote, &remote_job) {
        (Some(target), Some(job)) => {
            image::open_remote(&target.url, opts.asserted_format.as_deref(), job.clone())
        }
        _ => image::open(path, opts.asserted_format.as_deref(), &opts.image_roots),
    }
    .map_err(image_error)?;
    let mut report = Report {
        image: ImageInfo {
            path: path.display().to_string(),
            format: opened.format.as_str().to_string(),
            virtual_size: opened.virtual_size,
            backing_chain: opened
                .backing_chain
                .iter()
                .map(|p| p.display().to_string())
                .collect(),
            sha256: None,
            url: opts.remote.as_ref().map(|r| r.url.redacted()),
            bytes_fetched: None,
        },
        warnings: opened.warnings,
        ..Report::default()
    };

    let read = Arc::new(AtomicU64::new(0));
    let faults = Arc::new(ImageFaults::new(opened.source));
    let disk: Arc<dyn ReadAt> = Arc::new(
        Budgeted::new(faults.clone(), read.clone(), opts.read_budget)
            .with_cancel(opts.cancel.clone()),
    );
    let over_budget = || read.load(Ordering::Relaxed) > opts.read_budget;
    let cancelled = || {
        opts.cancel
            .as_ref()
            .is_some_and(|c| c.load(Ordering::Relaxed))
    };
    // Why the job must stop although the layers above turned the failed reads into
    // warnings. Budget and cancellation first: after them, reads fail in ways that are
    // not damage.
    let failed = || {
        if over_budget() {
            return Some(budget_error());
        }
        if cancelled() {
            return Some(image_error(ImageError::Cancelled));
        }
        faults.take().map(image_error)
    };

    let table = partition::read_table(disk.as_ref()).map_err(|source| match source {
        PartitionError::Image(e) => image_error(e),
        source => InspectError::Partition {
            path: path.to_path_buf(),
            source,
        },
    })?;

    // The block devices to probe: the partitions, or the whole disk without a table.
    let mut devices: Vec<(Mountable, Option<Arc<dyn ReadAt>>)> = Vec::new();
    match table {
        Some(table) => {
            report.partition_table = Some(table.kind.as_str().to_string());
            report.warnings.extend(table.warnings.iter().cloned());
            if table.partitions.is_empty() {
                // An empty table (or a stray signature): the disk itself may still hold
                // a filesystem, as blkid would find it.
                devices.push((Mountable::new(DISK), Some(disk.clone())));
            }
            for p in &table.partitions {
                let device = format!("{DISK}{}", p.number);
                report.partitions.push(PartitionInfo {
                    device: device.clone(),
                    number: p.number,
                    start: p.start,
                    size: p.size,
                    part_type: p.part_type.clone(),
                    name: p.name.clone(),
                    bootable: p.bootable,
                });
                let mut m = Mountable::new(&device);
                m.part_uuid = p.part_uuid.clone();
                m.part_label = p.name.clone().filter(|n| !n.is_empty());
                let src = if p.is_extended_container() {
                    None
                } else {
                    match Slice::new(disk.clone(), p.start, p.size) {
                        Ok(s) => Some(Arc::new(s) as Arc<dyn ReadAt>),
                        Err(e) => {
                            report.warnings.push(format!("{device}: not probed: {e}"));
                            None
                        }
                    }
                };
                devices.push((m, src));
            }
        }
        None => devices.push((Mountable::new(DISK), Some(disk.clone()))),
    }

    let mut groups: BTreeMap<String, VolumeGroupInfo> = BTreeMap::new();
    let mut mountables = Vec::with_capacity(devices.len());
    for (mut m, src) in devices {
        if let Some(src) = src {
            match probe(src.as_ref()) {
                Ok(Some(found)) => {
                    open_filesystem(&mut m, &found, &src, &mut report, &mut groups);
                }
                Ok(None) => {}
                Err(ImageError::BudgetExceeded { .. }) => return Err(budget_error()),
                Err(e) => report
                    .warnings
                    .push(format!("{}: cannot probe: {e}", m.device)),
            }
        }
        if let Some(e) = failed() {
            return Err(e);
        }
        mountables.push(m);
    }
    report.volume_groups = groups.into_values().collect();

    let include = Include {
        applications: opts.include_applications,
        users: opts.include_users,
        services: opts.include_services,
        network: opts.include_network,
        security: opts.include_security,
    };
    let (oses, warnings) = os::inspect_roots(&mountables, &include);
    // A budget hit or image damage inside the OS layer surfaced as per-file warnings;
    // either fails the job.
    if let Some(e) = failed() {
        return Err(e);
    }
    report.operating_systems = oses;
    report.warnings.extend(warnings);
    if report.operating_systems.is_empty() {
        report
            .warnings
            .push("no operating system root found on this disk".to_string());
    }
    let mut stats = InspectStats {
        bytes_read: read.load(Ordering::Relaxed),
        ..InspectStats::default()
    };
    if let Some(job) = &remote_job {
        stats.remote_bytes = job.stats.bytes.load(Ordering::Relaxed);
        stats.remote_requests = job.stats.requests.load(Ordering::Relaxed);
        report.image.bytes_fetched = Some(stats.remote_bytes);
    }
    Ok(Inspection {
        report,
        stats,
        devices: mountables,
    })
}

/// Records what the probe found on `m` and opens the filesystems we can read.
fn open_filesystem(
    m: &mut Mountable,
    found: &Probed,
    src: &Arc<dyn ReadAt>,
    report: &mut Report,
    groups: &mut BTreeMap<String, VolumeGroupInfo>,
) {
    let fs_type = found.fs_type;
    report.filesystems.push(FilesystemInfo {
        device: m.device.clone(),
        fs_type: fs_type.to_string(),
        uuid: found.uuid.clone(),
        label: found.label.clone(),
        size: found.size,
    });
    m.fs_type = Some(fs_type.to_string());
    m.uuid = found.uuid.clone();
    m.label = found.label.clone();
    let opened: Option<Result<Arc<dyn FileSystem>, FsError>> = match fs_type {
        "ext2" | "ext3" | "ext4" => Some(Ext4Fs::open(src.clone()).map(|fs| {
            // A journal that could not be replayed: the files may be older than the
            // guest last saw them.
            for w in fs.warnings() {
                report.warnings.push(format!("{}: {w}", m.device));
            }
            Arc::new(fs) as Arc<dyn FileSystem>
        })),
        "vfat" => Some(VfatFs::open(src.clone()).map(|fs| Arc::new(fs) as Arc<dyn FileSystem>)),
        "xfs" | "btrfs" | "ntfs" => {
            report.warnings.push(format!(
                "{}: {fs_type} filesystem: reading {fs_type} is not supported yet; an OS root or a \
                 mounted filesystem there is not inspected",
                m.device
            ));
            None
        }
        "LVM2_member" => {
            lvm_member(m, src, report, groups);
            None
        }
        "crypto_LUKS" => {
            report.warnings.push(format!(
                "{}: LUKS-encrypted volume: its contents are not inspected",
                m.device
            ));
            None
        }
        _ => None,
    };
    match opened {
        Some(Ok(fs)) => m.fs = Some(fs),
        Some(Err(e)) => report.warnings.push(format!(
            "{}: cannot open {fs_type} filesystem: {e}",
            m.device
        )),
        None => {}
    }
}

/// Adds an LVM2 PV to its volume group. Logical volumes are not read yet (a later
/// issue), so the group lists its PVs only, and a warning says roots on LVM are missed.
fn lvm_member(
    m: &Mountable,
    src: &Arc<dyn ReadAt>,
    report: &mut Report,
    groups: &mut BTreeMap<String, VolumeGroupInfo>,
) {
    let summary = match lvm2::detect(src.as_ref()) {
        Ok(Some(pv)) => lvm2::read_vg_summary(src.as_ref(), &pv),
        Ok(None) => Ok(None),
        Err(e) => Err(e),
    };
    match summary {
        Ok(Some(vg)) => {
            let g = groups
                .entry(vg.uuid.clone())
                .or_insert_with(|| VolumeGroupInfo {
                    name: vg.name.clone(),
                    uuid: vg.uuid.clone(),
                    physical_volumes: Vec::new(),
                    logical_volumes: Vec::new(),
                });
            g.physical_volumes.push(m.device.clone());
            report.warnings.push(format!(
                "{}: LVM2 physical volume of volume group {}: logical volumes are not read yet, so an OS \
                 root on LVM is not inspected",
                m.device, vg.name
            ));
        }
        Ok(None) => report.warnings.push(format!(
            "{}: LVM2 physical volume in no volume group",
            m.device
        )),
        Err(e) => report
            .warnings
            .push(format!("{}: cannot read LVM2 metadata: {e}", m.device)),
    }
}

/// Remembers the first error of the image layer that means damage (corrupt format
/// metadata, I/O failure, unsupported feature), so the pipeline can fail the job with it
/// whatever an upper layer made of it.
struct ImageFaults {
    inner: Arc<dyn ReadAt>,
    first: Mutex<Option<ImageError>>,
}

impl ImageFaults {
    fn new(inner: Arc<dyn ReadAt>) -> ImageFaults {
        ImageFaults {
            inner,
            first: Mutex::new(None),
        }
    }

    fn take(&self) -> Option<ImageError> {
        self.first.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

impl ReadAt for ImageFaults {
    fn size(&self) -> u64 {
        self.inner.size()
    }

    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), ImageError> {
        let r = self.inner.read_exact_at(offset, buf);
        if let Err(e) = &r {
            if let Some(copy) = damage(e) {
                let mut first = self.first.lock().unwrap_or_else(|e| e.into_inner());
                first.get_or_insert(copy);
            }
        }
        r
    }
}

/// A copy of `e` when it means the image is damaged or unreadable (`ImageError` is not
/// `Clone`: `Io` holds an `io::Error`, rebuilt here from its kind and message).
fn damage(e: &ImageError) -> Option<ImageError> {
    match e {
        ImageError::Corrupt {
            format,
            offset,
            message,
        } => Some(ImageError::Corrupt {
            format,
            offset: *offset,
            message: message.clone(),
        }),
        ImageError::Unsupported { format, message } => Some(ImageError::Unsupported {
            format,
            message: message.clone(),
        }),
        ImageError::Remote(e) => Some(ImageError::Remote(e.clone())),
        ImageError::Io { path, source } => Some(ImageError::Io {
            path: path.clone(),
            source: std::io::Error::new(source.kind(), source.to_string()),
        }),
        _ => None,
    }
}
