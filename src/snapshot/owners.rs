//! User and group names: read from `/etc/passwd` and `/etc/group` (no NSS: names served
//! only by LDAP or systemd-homed are recorded as numbers, and a restore falls back to ids).

use std::collections::HashMap;

/// Names by id and ids by name, for users and groups.
#[derive(Debug, Default)]
pub struct Owners {
    users: HashMap<u32, String>,
    groups: HashMap<u32, String>,
    uids: HashMap<String, u32>,
    gids: HashMap<String, u32>,
}

impl Owners {
    /// Reads the system's user and group databases; missing files give empty tables.
    pub fn system() -> Self {
        // A
        let users = parse(&std::fs::read_to_string("/etc/passwd").unwrap_or_default());
        let groups = parse(&std::fs::read_to_string("/etc/group").unwrap_or_default());
        Self::from_tables(users, groups)
    }

    fn from_tables(users: Vec<(String, u32)>, groups: Vec<(String, u32)>) -> Self {
        // A
        let mut o = Owners::default();
        for (name, id) in users {
            o.users.entry(id).or_insert_with(|| name.clone());
            o.uids.entry(name).or_insert(id);
        }
        for (name, id) in groups {
            o.groups.entry(id).or_insert_with(|| name.clone());
            o.gids.entry(name).or_insert(id);
        }
        o
    }

    /// The user name of `uid` (empty when unknown).
    pub fn user(&self, uid: u32) -> String {
        // A
        self.users.get(&uid).cloned().unwrap_or_default()
    }

    /// The group name of `gid` (empty when unknown).
    pub fn group(&self, gid: u32) -> String {
        // A
        self.groups.get(&gid).cloned().unwrap_or_default()
    }

    /// The uid to restore: the id this system gives the recorded name, else the recorded id.
    pub fn uid_for(&self, name: &str, uid: u32) -> u32 {
        // A
        self.uids.get(name).copied().unwrap_or(uid)
    }

    /// The gid to restore: the id this system gives the recorded name, else the recorded id.
    pub fn gid_for(&self, name: &str, gid: u32) -> u32 {
        // A
        self.gids.get(name).copied().unwrap_or(gid)
    }
}

/// `name:x:id:...` lines; malformed lines are skipped.
fn parse(text: &str) -> Vec<(String, u32)> {
    // A
    text.lines()
        .filter_map(|l| {
            let mut f = l.split(':');
            let name = f.next()?.trim();
            let id = f.nth(1)?.parse().ok()?;
            (!name.is_empty() && !name.starts_with('#')).then(|| (name.to_string(), id))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_maps_both_ways() {
        let o = Owners::from_tables(
            parse("root:x:0:0:root:/root:/bin/sh\nann:x:1000:1000::/home/ann:/bin/sh\nbad\n"),
            parse("root:x:0:\nusers:x:100:ann\n"),
        );
        assert_eq!(o.user(1000), "ann");
        assert_eq!(o.user(5), "");
        assert_eq!(o.group(100), "users");
        assert_eq!(o.uid_for("ann", 7), 1000);
        assert_eq!(o.uid_for("nobody-here", 7), 7);
        assert_eq!(o.gid_for("", 9), 9);
    }
}
