//! Installed applications from SOFTWARE's Uninstall keys (64-bit and, under
//! `WOW6432Node`, 32-bit), as libguestfs lists them: only keys with a `DisplayName`.

use crate::inspect::report::Application;

use super::hive::{Hive, HiveError};

const UNINSTALL: [&str; 2] = [
    "Microsoft\\Windows\\CurrentVersion\\Uninstall",
    "WOW6432Node\\Microsoft\\Windows\\CurrentVersion\\Uninstall",
];
/// Most applications listed.
const MAX_APPS: usize = 20_000;

pub(crate) fn read(software: &Hive) -> Result<Vec<Application>, HiveError> {
    let mut out = Vec::new();
    for path in UNINSTALL {
        let Some(root) = software.key(path)? else {
            continue;
        };
        for k in software.subkeys(&root)? {
            if out.len() >= MAX_APPS {
                return Ok(out);
            }
            let text = |name: &str| -> Result<Option<String>, HiveError> {
                Ok(software
                    .value(&k, name)?
                    .and_then(|v| v.as_str().map(str::to_string))
                    .filter(|s| !s.is_empty()))
            };
            let Some(display_name) = text("DisplayName")? else {
                continue;
            };
            out.push(Application {
                name: k.name.clone(),
                display_name: Some(display_name),
                version: text("DisplayVersion")?.unwrap_or_default(),
                publisher: text("Publisher")?,
                install_path: text("InstallLocation")?,
                url: text("URLInfoAbout")?,
                description: text("Comments")?,
                ..Application::default()
            });
        }
    }
    Ok(out)
}
