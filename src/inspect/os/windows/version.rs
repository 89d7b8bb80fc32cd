//! Product, version, build and libosinfo name from SOFTWARE's
//! `Microsoft\Windows NT\CurrentVersion`, as libguestfs derives them.

use super::hive::{Hive, HiveError};

/// What the `CurrentVersion` key says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Version {
    pub product_name: Option<String>,
    pub product_variant: Option<String>,
    pub major: Option<u32>,
    pub minor: Option<u32>,
    pub build: Option<String>,
}

pub(crate) fn read(software: &Hive) -> Result<Version, HiveError> {
    let Some(k) = software.key("Microsoft\\Windows NT\\CurrentVersion")? else {
        return Ok(Version::default());
    };
    let text = |name: &str| -> Result<Option<String>, HiveError> {
        Ok(software
            .value(&k, name)?
            .and_then(|v| v.as_str().map(str::to_string))
            .filter(|s| !s.is_empty()))
    };
    let dword = |name: &str| -> Result<Option<u32>, HiveError> {
        Ok(software
            .value(&k, name)?
            .and_then(|v| v.as_u64())
            .and_then(|n| u32::try_from(n).ok()))
    };
    // Windows 10 and later keep "6.3" in CurrentVersion for old installers; the real
    // version is in the two DWORDs.
    let (major, minor) = match (
        dword("CurrentMajorVersionNumber")?,
        dword("CurrentMinorVersionNumber")?,
    ) {
        (Some(a), Some(b)) => (Some(a), Some(b)),
        _ => match text("CurrentVersion")? {
            Some(v) => {
                let mut it = v.split('.').map(|p| p.trim().parse::<u32>().ok());
                (it.next().flatten(), it.next().flatten())
            }
            None => (None, None),
        },
    };
    Ok(Version {
        product_name: text("ProductName")?,
        product_variant: text("InstallationType")?,
        major,
        minor,
        build: text("CurrentBuildNumber")?,
    })
}

/// The libosinfo short id of this Windows.
pub(crate) fn osinfo(v: &Version) -> Option<String> {
    let name = v.product_name.as_deref().unwrap_or("");
    let server = match v.product_variant.as_deref() {
        Some("Client") => false,
        Some(variant) => variant.contains("Server") || name.contains("Server"),
        None => name.contains("Server"),
    };
    let build: u32 = v.build.as_deref().and_then(|b| b.parse().ok()).unwrap_or(0);
    let id = match (v.major?, v.minor?, server) {
        (5, 1, false) => "winxp",
        (5, 2, false) => "winxp",
        (5, 2, true) if name.contains("R2") => "win2k3r2",
        (5, 2, true) => "win2k3",
        (6, 0, false) => "winvista",
        (6, 0, true) => "win2k8",
        (6, 1, false) => "win7",
        (6, 1, true) => "win2k8r2",
        (6, 2, false) => "win8",
        (6, 2, true) => "win2k12",
        (6, 3, false) => "win8.1",
        (6, 3, true) => "win2k12r2",
        (10, 0, false) if build >= 22000 => "win11",
        (10, 0, false) => "win10",
        (10, 0, true) if name.contains("2025") => "win2k25",
        (10, 0, true) if name.contains("2022") => "win2k22",
        (10, 0, true) if name.contains("2019") => "win2k19",
        (10, 0, true) => "win2k16",
        _ => return None,
    };
    Some(id.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(name: &str, variant: &str, major: u32, minor: u32, build: &str) -> Version {
        Version {
            product_name: Some(name.into()),
            product_variant: Some(variant.into()),
            major: Some(major),
            minor: Some(minor),
            build: Some(build.into()),
        }
    }

    #[test]
    fn osinfo_names() {
        let o = |x: Version| osinfo(&x).unwrap();
        assert_eq!(o(v("Windows 10 Pro", "Client", 10, 0, "19045")), "win10");
        // Windows 11 still calls itself "Windows 10" in ProductName.
        assert_eq!(o(v("Windows 10 Pro", "Client", 10, 0, "22631")), "win11");
        assert_eq!(
            o(v(
                "Windows Server 2022 Datacenter",
                "Server",
                10,
                0,
                "20348"
            )),
            "win2k22"
        );
        assert_eq!(
            o(v(
                "Windows Server 2019 Standard",
                "Server Core",
                10,
                0,
                "17763"
            )),
            "win2k19"
        );
        assert_eq!(
            o(v("Windows Server 2025 Standard", "Server", 10, 0, "26100")),
            "win2k25"
        );
        assert_eq!(
            o(v("Windows Server 2016 Standard", "Server", 10, 0, "14393")),
            "win2k16"
        );
        assert_eq!(
            o(v("Windows Server 2012 R2 Standard", "Server", 6, 3, "9600")),
            "win2k12r2"
        );
        assert_eq!(
            o(v("Windows 7 Professional", "Client", 6, 1, "7601")),
            "win7"
        );
        assert_eq!(
            o(v("Windows Server 2008 R2 Standard", "Server", 6, 1, "7601")),
            "win2k8r2"
        );
        assert_eq!(osinfo(&Version::default()), None);
    }
}
