//! Small one-file facts: the machine id and whether cloud-init will run.

use super::context::Ctx;
use super::services::Services;

/// `/etc/machine-id`: 32 hex digits; `None` when absent, empty or `uninitialized` (an
/// image prepared for cloning, which gets its id at first boot).
pub fn machine_id(ctx: &mut Ctx) -> Option<String> {
    let text = ctx.read_text("/etc/machine-id")?;
    let id = text.trim();
    if id.is_empty() || id == "uninitialized" {
        return None;
    }
    if id.len() != 32 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        ctx.warn("/etc/machine-id: not a 32-hex-digit machine id");
        return None;
    }
    Some(id.to_ascii_lowercase())
}

/// cloud-init is installed (its config or one of its units exists) and not switched
/// off with `/etc/cloud/cloud-init.disabled`.
pub fn cloud_init(ctx: &mut Ctx, services: &Services) -> bool {
    if ctx.guest.exists("/etc/cloud/cloud-init.disabled") {
        return false;
    }
    ctx.guest.is_file("/etc/cloud/cloud.cfg")
        || services.is_enabled("cloud-init")
        || [
            "/usr/lib/systemd/system/cloud-init.service",
            "/lib/systemd/system/cloud-init.service",
            "/etc/init.d/cloud-init",
        ]
        .iter()
        .any(|p| ctx.guest.exists(p))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::inspect::os::guest::GuestFs;
    use crate::inspect::os::memfs::MemFs;

    fn run(fs: MemFs) -> (Option<String>, bool, usize) {
        let g = GuestFs::new(Arc::new(fs));
        let mut ctx = Ctx::new(&g, "/dev/sda1");
        let id = machine_id(&mut ctx);
        let ci = cloud_init(&mut ctx, &Services::default());
        (id, ci, ctx.into_warnings().len())
    }

    #[test]
    fn machine_id_and_cloud_init() {
        let id = "0123456789abcdef0123456789ABCDEF";
        assert_eq!(
            run(MemFs::new()
                .file("/etc/machine-id", format!("{id}\n"))
                .file("/etc/cloud/cloud.cfg", "")),
            (Some(id.to_ascii_lowercase()), true, 0)
        );
        assert_eq!(
            run(MemFs::new().file("/etc/machine-id", "uninitialized\n")),
            (None, false, 0)
        );
        assert_eq!(
            run(MemFs::new().file("/etc/machine-id", "")),
            (None, false, 0)
        );
        assert_eq!(
            run(MemFs::new().file("/etc/machine-id", "zz")),
            (None, false, 1)
        );
        assert_eq!(
            run(MemFs::new()
                .file("/etc/cloud/cloud.cfg", "")
                .file("/etc/cloud/cloud-init.disabled", "")),
            (None, false, 0)
        );
    }
}
