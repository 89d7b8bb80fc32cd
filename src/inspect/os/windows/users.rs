//! Local accounts from the SAM hive: names under `SAM\Domains\Account\Users\Names`
//! (each name's default value *type* is its RID) and the disabled bit of each RID's
//! `F` record. Password hashes (the `V` record) are never read.

use crate::inspect::bytes::le16;
use crate::inspect::report::User;

use super::hive::{Hive, HiveError, RegValue};

pub(crate) const USERS: &str = "SAM\\Domains\\Account\\Users";
/// Account control bit: the account is disabled.
pub(crate) const ACB_DISABLED: u16 = 0x0001;
/// Most accounts listed.
const MAX_USERS: usize = 10_000;

/// The account control bits of RID `rid` (the `F` record of its key), if readable.
pub(crate) fn account_control(sam: &Hive, rid: u32) -> Result<Option<u16>, HiveError> {
    let Some(k) = sam.key(&format!("{USERS}\\{rid:08X}"))? else {
        return Ok(None);
    };
    Ok(sam.value(&k, "F")?.and_then(|v| {
        v.as_bytes()
            .filter(|b| b.len() >= 0x3a)
            .map(|b| le16(b, 0x38))
    }))
}

pub(crate) fn read(sam: &Hive) -> Result<Vec<User>, HiveError> {
    let Some(names) = sam.key(&format!("{USERS}\\Names"))? else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for k in sam.subkeys(&names)?.into_iter().take(MAX_USERS) {
        let rid = match sam.value(&k, "")? {
            Some(RegValue::Other { kind, .. }) => kind,
            _ => continue,
        };
        let disabled = account_control(sam, rid)?.is_some_and(|acb| acb & ACB_DISABLED != 0);
        out.push(User {
            name: k.name.clone(),
            uid: rid,
            gid: 0,
            home: String::new(),
            shell: String::new(),
            system: rid < 1000,
            locked: disabled,
        });
    }
    out.sort_by_key(|u| u.uid);
    Ok(out)
}
