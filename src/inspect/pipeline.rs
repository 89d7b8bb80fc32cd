//! The whole inspection of one job's disks, layer by layer, into one [`Report`]:
//! image format of each disk -> one shared read budget -> partition tables -> probe of
//! every partition (or whole disk) -> volume layer (LVM VGs assembled across all disks,
//! their LVs probed in turn) -> ext2/3/4 and vfat opened -> OS roots found and inspected.
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

use guestkit_job_spec::ErrorKind;

use super::caps;
use super::fs::btrfs::BtrfsFs;
use super::fs::ext4::Ext4Fs;
use super::fs::ntfs::NtfsFs;
use super::fs::probe::{probe, Probed};
use super::fs::vfat::VfatFs;
use super::fs::xfs::XfsFs;
use super::fs::{FileSystem, FsError};
use super::image;
use super::os::mountable::SubvolumeRef;
use super::os::{self, Include, Mountable};
use super::partition::{self, PartitionError};
use super::report::{
    DiskInfo, EncryptedVolumeInfo, FilesystemInfo, ImageInfo, PartitionInfo, Report, SubvolumeInfo,
};
use super::source::{Budgeted, CancelFlag, ReadAt, ReadError, Slice};
use super::volume::{self, BlockDevice};
use super::work::{Work, DEFAULT_WORK_BUDGET};

/// Default cap on guest bytes read by one inspection. A full inspection of a typical
/// guest reads tens of MiB; the cap only stops pathological images (or huge package
/// databases, see `os/apps.rs`) from reading without end.
pub const DEFAULT_READ_BUDGET: u64 = 4 * 1024 * 1024 * 1024;

/// Most disks in one job (`/dev/sda` .. `/dev/sdp`).
pub const MAX_DISKS: usize = 16;
/// Most rounds of volume assembly (LVM on MD on ... ): each round assembles the
/// containers the previous one revealed.
const MAX_VOLUME_ROUNDS: usize = 4;

/// The guest name of disk `index`: `/dev/sda`, `/dev/sdb`, ...; partitions append their
/// number.
pub fn disk_name(index: usize) -> String {
    format!("/dev/sd{}", char::from(b'a' + (index % 26) as u8))
}

/// A further disk of the job (the first is the `path` given to [`inspect`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskSpec {
    pub path: PathBuf,
    /// Asserted format, like [`InspectOptions::asserted_format`] for the first disk.
    pub format: Option<String>,
}

/// Most partitions probed (and filesystems opened) per disk. Real disks have a few, GPT
/// allows 128 by default; a hostile table of thousands of entries over one filesystem
/// would otherwise open it thousands of times (one reader thread and cache each).
pub const MAX_PROBED_PARTITIONS: usize = 64;

/// What to inspect and within which limits.
#[derive(Debug, Clone)]
pub struct InspectOptions {
    /// Directories backing files must resolve inside (see `image::open`).
    pub image_roots: Vec<PathBuf>,
    /// Folders whose direct children (not subfolders) may also be backing files (see
    /// `image::open_confined`): the CLI's trust in the folder of the image it was given.
    pub image_dirs: Vec<PathBuf>,
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
    /// Disks after the first (`/dev/sdb`, ...), for guests spread over several disks.
    pub extra_disks: Vec<DiskSpec>,
    /// Most units of CPU-heavy work that reads no disk (see `inspect::work`).
    pub work_budget: u64,
    /// Passphrases for LUKS volumes (never logged: `Debug` shows counts).
    pub luks_keys: volume::luks::open::LuksKeys,
    /// A remote image (`image.url`): the first disk is read through this channel to its
    /// fetcher, and the path only names it (the URL without its query).
    pub remote: Option<Arc<image::remote::RemoteClient>>,
}

impl Default for InspectOptions {
    fn default() -> InspectOptions {
        InspectOptions {
            image_roots: Vec::new(),
            image_dirs: Vec::new(),
            asserted_format: None,
            include_applications: true,
            include_users: true,
            include_services: true,
            include_network: true,
            include_security: true,
            read_budget: DEFAULT_READ_BUDGET,
            cancel: None,
            extra_disks: Vec::new(),
            work_budget: DEFAULT_WORK_BUDGET,
            luks_keys: Default::default(),
            remote: None,
        }
    }
}

/// Counters of one inspection, for metrics and benchmarks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InspectStats {
    /// Guest (virtual-disk) bytes read through the budget.
    pub bytes_read: u64,
    /// Bytes and HTTP requests fetched for a remote image (checksum included).
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
        source: ReadError,
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
    /// The process ran out of memory or threads (see [`resources`](super::resources)).
    #[error("inspection of {path} stopped: {message}")]
    Resources { path: PathBuf, message: String },
}

impl InspectError {
    /// The result's `error.kind`.
    pub fn kind(&self) -> ErrorKind {
        match self {
            InspectError::Image {
                source: ReadError::Io { .. },
                ..
            } => ErrorKind::IoError,
            InspectError::Image {
                source: ReadError::Cancelled,
                ..
            } => ErrorKind::Cancelled,
            InspectError::Image {
                source: ReadError::Remote(e),
                ..
            } => e.kind(),
            InspectError::Image { .. } => ErrorKind::ImageError,
            InspectError::Partition { .. } => ErrorKind::PartitionError,
            InspectError::Budget { .. } => ErrorKind::ReadBudgetExceeded,
            InspectError::Resources { .. } => ErrorKind::ResourceLimit,
        }
    }

    /// I/O on the image file may be transient (network storage), and so may a remote
    /// fetch the server failed; everything about the image's content is not.
    pub fn retryable(&self) -> bool {
        match self {
            InspectError::Image {
                source: ReadError::Remote(e),
                ..
            } => e.transient(),
            _ => self.kind() == ErrorKind::IoError,
        }
    }
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
    let specs = disk_specs(path, opts)?;
    let mut report = Report::default();
    let disks = Disks::open(path, opts, &specs, &mut report)?;
    let devices = disks.partitions(&specs, &mut report)?;
    // One work budget for the job: LUKS key derivation spends from it first.
    let work = Arc::new(Work::new(opts.work_budget, opts.cancel.clone()));
    let mountables = disks.block_devices(devices, &work, &mut report)?;

    let include = Include {
        applications: opts.include_applications,
        users: opts.include_users,
        services: opts.include_services,
        network: opts.include_network,
        security: opts.include_security,
    };
    let (oses, warnings) = os::inspect_roots(&mountables, &include, &work);
    // A budget hit or image damage inside the OS layer surfaced as per-file warnings;
    // either fails the job.
    disks.check()?;
    report.operating_systems = oses;
    report.warnings.extend(warnings);
    if include.security {
        for o in &mut report.operating_systems {
            os::windows::note_bitlocker(o, &report.encrypted);
        }
    }
    if report.operating_systems.is_empty() {
        report
            .warnings
            .push("no operating system root found on this disk".to_string());
    }
    caps::cap_output(&mut report);
    let mut stats = InspectStats {
        bytes_read: disks.read.load(Ordering::Relaxed),
        ..InspectStats::default()
    };
    if let Some(client) = &opts.remote {
        let (bytes, requests) = client.stats().map_err(|e| InspectError::Image {
            path: path.to_path_buf(),
            source: e.into(),
        })?;
        (stats.remote_bytes, stats.remote_requests) = (bytes, requests);
        report.image.bytes_fetched = Some(bytes);
    }
    Ok(Inspection {
        report,
        stats,
        devices: mountables,
    })
}

/// The image at `path` and the job's extra disks, at most [`MAX_DISKS`].
fn disk_specs(path: &Path, opts: &InspectOptions) -> Result<Vec<DiskSpec>, InspectError> {
    let mut specs = vec![DiskSpec {
        path: path.to_path_buf(),
        format: opts.asserted_format.clone(),
    }];
    specs.extend(opts.extra_disks.iter().cloned());
    if specs.len() > MAX_DISKS {
        return Err(InspectError::Image {
            path: path.to_path_buf(),
            source: ReadError::TooLarge {
                what: "disk count",
                size: specs.len() as u64,
                limit: MAX_DISKS as u64,
            },
        });
    }
    Ok(specs)
}

/// A block device to probe (none for a partition that cannot be read: it is still
/// listed).
type Device = (Mountable, Option<Arc<dyn ReadAt>>);

/// The opened disks of one inspection, read through the job's budget, and what tells
/// the job to stop.
struct Disks<'a> {
    path: &'a Path,
    opts: &'a InspectOptions,
    /// Guest bytes read so far, by all disks.
    read: Arc<AtomicU64>,
    /// Each disk's image with the first damage seen on it.
    faults: Vec<(PathBuf, Arc<ImageFaults>)>,
    disks: Vec<Arc<dyn ReadAt>>,
}

impl<'a> Disks<'a> {
    /// Opens every disk (format, backing chain; the first over HTTP for a remote image)
    /// and records it in the report.
    fn open(
        path: &'a Path,
        opts: &'a InspectOptions,
        specs: &[DiskSpec],
        report: &mut Report,
    ) -> Result<Disks<'a>, InspectError> {
        let mut d = Disks {
            path,
            opts,
            read: Arc::new(AtomicU64::new(0)),
            faults: Vec::new(),
            disks: Vec::new(),
        };
        for (i, spec) in specs.iter().enumerate() {
            let image_error = |source: ReadError| match source {
                ReadError::BudgetExceeded { .. } => d.budget_error(),
                source => InspectError::Image {
                    path: spec.path.clone(),
                    source,
                },
            };
            let opened = match &opts.remote {
                Some(client) if i == 0 => {
                    image::open_remote(client.clone(), spec.format.as_deref())
                }
                _ => image::open_confined(
                    &spec.path,
                    spec.format.as_deref(),
                    &opts.image_roots,
                    &opts.image_dirs,
                ),
            }
            .map_err(image_error)?;
            let backing_chain: Vec<String> = opened
                .backing_chain
                .iter()
                .map(|p| p.display().to_string())
                .collect();
            if i == 0 {
                report.image = ImageInfo {
                    path: spec.path.display().to_string(),
                    format: opened.format.as_str().to_string(),
                    virtual_size: opened.virtual_size,
                    backing_chain: backing_chain.clone(),
                    sha256: None,
                    url: opts
                        .remote
                        .as_ref()
                        .map(|_| spec.path.display().to_string()),
                    bytes_fetched: None,
                };
            }
            report.disks.push(DiskInfo {
                device: disk_name(i),
                path: spec.path.display().to_string(),
                format: opened.format.as_str().to_string(),
                virtual_size: opened.virtual_size,
                backing_chain,
            });
            report.warnings.extend(opened.warnings);
            let faults = Arc::new(ImageFaults::new(opened.source));
            d.faults.push((spec.path.clone(), faults.clone()));
            let disk: Arc<dyn ReadAt> = Arc::new(
                Budgeted::new(faults, d.read.clone(), opts.read_budget)
                    .with_cancel(opts.cancel.clone()),
            );
            d.disks.push(disk);
        }
        Ok(d)
    }

    fn budget_error(&self) -> InspectError {
        InspectError::Budget {
            path: self.path.to_path_buf(),
            limit: self.opts.read_budget,
        }
    }

    /// Why the job must stop although the layers above turned the failed reads into
    /// warnings. Budget and cancellation first: after them, reads fail in ways that are
    /// not damage. Decompressed bytes count too: a small compressed image must not
    /// inflate without end.
    fn failed(&self) -> Option<InspectError> {
        let inflated: u64 = self.faults.iter().map(|(_, f)| f.inflated()).sum();
        if self.read.load(Ordering::Relaxed).saturating_add(inflated) > self.opts.read_budget {
            return Some(self.budget_error());
        }
        let cancelled = self
            .opts
            .cancel
            .as_ref()
            .is_some_and(|c| c.load(Ordering::Relaxed));
        if cancelled {
            return Some(InspectError::Image {
                path: self.path.to_path_buf(),
                source: ReadError::Cancelled,
            });
        }
        if let Some(message) = super::resources::take() {
            return Some(InspectError::Resources {
                path: self.path.to_path_buf(),
                message,
            });
        }
        self.faults.iter().find_map(|(p, f)| {
            f.take().map(|source| InspectError::Image {
                path: p.clone(),
                source,
            })
        })
    }

    fn check(&self) -> Result<(), InspectError> {
        match self.failed() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// The block devices to probe: the partitions, or the whole disk without a table.
    fn partitions(
        &self,
        specs: &[DiskSpec],
        report: &mut Report,
    ) -> Result<Vec<Device>, InspectError> {
        let mut devices = Vec::new();
        for (i, (disk, spec)) in self.disks.iter().zip(specs).enumerate() {
            let table = partition::read_table(disk.as_ref()).map_err(|source| match source {
                PartitionError::Image(ReadError::BudgetExceeded { .. }) => self.budget_error(),
                PartitionError::Image(source) => InspectError::Image {
                    path: spec.path.clone(),
                    source,
                },
                source => InspectError::Partition {
                    path: spec.path.clone(),
                    source,
                },
            })?;
            add_disk_devices(&disk_name(i), disk, table, i == 0, report, &mut devices);
        }
        Ok(devices)
    }

    /// Probes every device, opens the containers they reveal (LUKS with `work` paying
    /// for key derivation, LVM, MD: in rounds, since a container may hold containers)
    /// and the Btrfs filesystems spanning them.
    fn block_devices(
        &self,
        devices: Vec<Device>,
        work: &Work,
        report: &mut Report,
    ) -> Result<Vec<Mountable>, InspectError> {
        let mut mountables = Vec::with_capacity(devices.len());
        let mut containers = Vec::new();
        // Btrfs members, opened once every device is probed (a filesystem may span several).
        let mut btrfs_members: BtrfsMembers = Vec::new();
        let mut add = |mut m: Mountable,
                       src: Option<Arc<dyn ReadAt>>,
                       report: &mut Report,
                       containers: &mut Vec<_>|
         -> Result<(), InspectError> {
            if let Some(src) = src {
                let found = probe_device(&mut m, &src, report, containers)
                    .map_err(|_| self.budget_error())?;
                if found == Some("btrfs") {
                    btrfs_members.push((mountables.len(), src));
                }
            }
            self.check()?;
            mountables.push(m);
            Ok(())
        };
        for (m, src) in devices {
            add(m, src, report, &mut containers)?;
        }
        // Containers reveal more devices, which may be containers again.
        for _ in 0..MAX_VOLUME_ROUNDS {
            if containers.is_empty() {
                break;
            }
            let opened = volume::luks::open::unlock(
                std::mem::take(&mut containers),
                &self.opts.luks_keys,
                work,
            );
            report.encrypted.extend(opened.encrypted);
            report.warnings.extend(opened.warnings);
            let assembled = volume::assemble(&opened.rest);
            report.volume_groups.extend(assembled.volume_groups);
            report.md_arrays.extend(assembled.md_arrays);
            report.warnings.extend(assembled.warnings);
            for dev in opened.devices.into_iter().chain(assembled.devices) {
                add(
                    Mountable::new(&dev.name),
                    Some(dev.src),
                    report,
                    &mut containers,
                )?;
            }
        }
        // A named MD array is also `/dev/md/<name>` (mdadm's link), as fstab may say.
        for a in &report.md_arrays {
            if let Some(name) = a.name.as_deref().map(|n| n.rsplit(':').next().unwrap_or(n)) {
                if let Some(m) = mountables.iter_mut().find(|m| m.device == a.device) {
                    m.aliases.push(format!("/dev/md/{name}"));
                }
            }
        }
        open_btrfs(&mut mountables, btrfs_members, report);
        self.check()?;
        Ok(mountables)
    }
}

/// The devices of one disk: its partitions, or the disk itself without a table (or
/// with an empty one: a stray signature, as blkid would see it).
fn add_disk_devices(
    disk_dev: &str,
    disk: &Arc<dyn ReadAt>,
    table: Option<partition::PartitionTable>,
    first: bool,
    report: &mut Report,
    devices: &mut Vec<Device>,
) {
    let Some(table) = table else {
        devices.push((Mountable::new(disk_dev), Some(disk.clone())));
        return;
    };
    if first {
        report.partition_table = Some(table.kind.as_str().to_string());
    }
    report.warnings.extend(table.warnings.iter().cloned());
    if table.partitions.is_empty() {
        devices.push((Mountable::new(disk_dev), Some(disk.clone())));
    }
    let mut probed: std::collections::HashSet<(u64, u64)> = Default::default();
    let (mut repeated, mut skipped) = (0usize, 0usize);
    for p in &table.partitions {
        let device = format!("{disk_dev}{}", p.number);
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
        m.part_type = Some(p.part_type.clone());
        m.part_attrs = p.attributes;
        m.part_start = Some(p.start);
        // A byte range probed once is not probed again: overlapping copies of one table
        // entry would open the same filesystem many times.
        let src = if p.is_extended_container() {
            None
        } else if probed.contains(&(p.start, p.size)) {
            repeated += 1;
            None
        } else if probed.len() == MAX_PROBED_PARTITIONS {
            skipped += 1;
            None
        } else {
            probed.insert((p.start, p.size));
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
    if repeated > 0 {
        report.warnings.push(format!(
            "{disk_dev}: {repeated} partitions repeat the byte range of an earlier one: not probed \
             again"
        ));
    }
    if skipped > 0 {
        report.warnings.push(format!(
            "{disk_dev}: {skipped} partitions not probed: only {MAX_PROBED_PARTITIONS} distinct \
             partitions are probed per disk"
        ));
    }
}

/// Probes one device, records what is on it, opens a filesystem we read, and queues a
/// container for the volume layer. `Err` only when the read budget ran out.
fn probe_device(
    m: &mut Mountable,
    src: &Arc<dyn ReadAt>,
    report: &mut Report,
    containers: &mut Vec<BlockDevice>,
) -> Result<Option<&'static str>, ReadError> {
    match probe(src.as_ref()) {
        Ok(Some(found)) => {
            open_filesystem(m, &found, src, report);
            if matches!(
                found.fs_type,
                "LVM2_member" | "crypto_LUKS" | "linux_raid_member"
            ) {
                containers.push(BlockDevice {
                    name: m.device.clone(),
                    src: src.clone(),
                });
            }
            Ok(Some(found.fs_type))
        }
        Ok(None) => Ok(None),
        Err(e @ ReadError::BudgetExceeded { .. }) => Err(e),
        Err(e) => {
            report
                .warnings
                .push(format!("{}: cannot probe: {e}", m.device));
            Ok(None)
        }
    }
}

/// Records what the probe found on `m` and opens the filesystems we can read.
fn open_filesystem(m: &mut Mountable, found: &Probed, src: &Arc<dyn ReadAt>, report: &mut Report) {
    let fs_type = found.fs_type;
    report.filesystems.push(FilesystemInfo {
        device: m.device.clone(),
        fs_type: fs_type.to_string(),
        uuid: found.uuid.clone(),
        label: found.label.clone(),
        size: found.size,
        subvolumes: Vec::new(),
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
        "xfs" => Some(XfsFs::open(src.clone()).map(|fs| {
            // A dirty log that was not replayed, damaged AG headers.
            for w in fs.warnings() {
                report.warnings.push(format!("{}: {w}", m.device));
            }
            Arc::new(fs) as Arc<dyn FileSystem>
        })),
        "ntfs" => Some(NtfsFs::open(src.clone()).map(|fs| {
            for w in fs.warnings() {
                report.warnings.push(format!("{}: {w}", m.device));
            }
            Arc::new(fs) as Arc<dyn FileSystem>
        })),
        // Opened by `open_btrfs` once every device is probed.
        "btrfs" => None,
        // LUKS volumes are reported (and unlocked) by the volume layer.
        "BitLocker" => {
            report.encrypted.push(EncryptedVolumeInfo {
                device: m.device.clone(),
                enc_type: "bitlocker".into(),
                ..EncryptedVolumeInfo::default()
            });
            report.warnings.push(format!(
                "{}: BitLocker volume: locked, its contents are not inspected",
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

/// Btrfs member devices: index in the mountables and byte source.
type BtrfsMembers = Vec<(usize, Arc<dyn ReadAt>)>;

/// Opens each btrfs filesystem from all its member devices (grouped by filesystem
/// uuid), lists its subvolumes in the report, and adds one mountable per subvolume
/// other than the default one, named `btrfsvol:<first member>/<path>` as libguestfs
/// names them. The first member shows the default subvolume, as a plain mount would.
fn open_btrfs(mountables: &mut Vec<Mountable>, members: BtrfsMembers, report: &mut Report) {
    let mut groups: BTreeMap<Option<String>, BtrfsMembers> = BTreeMap::new();
    for (i, src) in members {
        groups
            .entry(mountables[i].uuid.clone())
            .or_default()
            .push((i, src));
    }
    for (uuid, members) in groups {
        let first = members[0].0;
        let device = mountables[first].device.clone();
        let srcs: Vec<Arc<dyn ReadAt>> = members.iter().map(|(_, s)| s.clone()).collect();
        let fs = match BtrfsFs::open(&srcs) {
            Ok(fs) => fs,
            Err(e) => {
                report
                    .warnings
                    .push(format!("{device}: cannot open btrfs filesystem: {e}"));
                continue;
            }
        };
        for w in fs.warnings() {
            report.warnings.push(format!("{device}: {w}"));
        }
        let subvolumes = fs.subvolumes().unwrap_or_else(|e| {
            report
                .warnings
                .push(format!("{device}: cannot list btrfs subvolumes: {e}"));
            Vec::new()
        });
        for info in report
            .filesystems
            .iter_mut()
            .filter(|f| f.fs_type == "btrfs" && f.uuid == uuid)
        {
            info.subvolumes = subvolumes
                .iter()
                .map(|s| SubvolumeInfo {
                    id: s.id,
                    path: s.path.clone(),
                })
                .collect();
        }
        let default = fs.default_subvolume();
        let path_of = |id: u64| {
            subvolumes
                .iter()
                .find(|s| s.id == id)
                .map_or(String::new(), |s| s.path.clone())
        };
        let base = mountables[first].clone();
        mountables[first].subvolume = Some(SubvolumeRef {
            device: device.clone(),
            id: default,
            path: path_of(default),
        });
        for s in subvolumes.iter().filter(|s| s.id != default) {
            match fs.view(s.id) {
                Ok(view) => {
                    let mut m = base.clone();
                    m.device = format!("btrfsvol:{device}/{}", s.path);
                    m.part_uuid = None;
                    m.part_label = None;
                    m.part_type = None;
                    m.fs = Some(Arc::new(view));
                    m.subvolume = Some(SubvolumeRef {
                        device: device.clone(),
                        id: s.id,
                        path: s.path.clone(),
                    });
                    mountables.push(m);
                }
                Err(e) => report.warnings.push(format!(
                    "{device}: btrfs subvolume {} ({}) cannot be read: {e}",
                    s.path, s.id
                )),
            }
        }
        mountables[first].fs = Some(Arc::new(fs));
    }
}

/// Remembers the first error of the image layer that means damage (corrupt format
/// metadata, I/O failure, unsupported feature), so the pipeline can fail the job with it
/// whatever an upper layer made of it.
struct ImageFaults {
    inner: Arc<dyn ReadAt>,
    first: Mutex<Option<ReadError>>,
}

impl ImageFaults {
    fn new(inner: Arc<dyn ReadAt>) -> ImageFaults {
        ImageFaults {
            inner,
            first: Mutex::new(None),
        }
    }

    fn take(&self) -> Option<ReadError> {
        self.first.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

impl ReadAt for ImageFaults {
    fn size(&self) -> u64 {
        self.inner.size()
    }

    fn inflated(&self) -> u64 {
        self.inner.inflated()
    }

    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), ReadError> {
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

/// A copy of `e` when it means the image is damaged or unreadable (`ReadError` is not
/// `Clone`: `Io` holds an `io::Error`, rebuilt here from its kind and message).
fn damage(e: &ReadError) -> Option<ReadError> {
    match e {
        ReadError::Corrupt {
            format,
            offset,
            message,
        } => Some(ReadError::Corrupt {
            format,
            offset: *offset,
            message: message.clone(),
        }),
        ReadError::Unsupported { format, message } => Some(ReadError::Unsupported {
            format,
            message: message.clone(),
        }),
        ReadError::Io { path, source } => Some(ReadError::Io {
            path: path.clone(),
            source: std::io::Error::new(source.kind(), source.to_string()),
        }),
        ReadError::Remote(e) => Some(ReadError::Remote(e.clone())),
        _ => None,
    }
}
