//! `--chown` and USER names resolved through an image's `/etc/passwd` and
//! `/etc/group`, as BuildKit's file backend resolves them.
//!
//! `user[:group]`: numbers (and `root`) are taken as they are; a number
//! alone sets the group to the same number; a user name takes the uid and
//! primary gid from `/etc/passwd`; a group name takes its gid from
//! `/etc/group`. The files are read from the destination's view, with
//! symlinks resolved inside the image, never from the host.

use super::view::FsView;
use hoist_oci::layer::tar::{Content, EntryKind};

/// Files larger than this are not user databases (BuildKit's limit).
const MAX_USER_FILE: u64 = 10 << 20;

/// One side of `user:group`, before resolution.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Id {
    Number(u64),
    Name(String),
}

fn parse_id(s: &str) -> Id {
    if s == "root" {
        return Id::Number(0);
    }
    match s.parse::<i32>() {
        Ok(n) if n >= 0 => Id::Number(n as u64),
        _ => Id::Name(s.to_string()),
    }
}

/// A name that the image does not define.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserError {
    #[error("unknown user {name}: /etc/passwd of the image has no such user")]
    UnknownUser { name: String },
    #[error("unknown group {name}: /etc/group of the image has no such group")]
    UnknownGroup { name: String },
    #[error("cannot read {path} from the image: {reason}")]
    Read { path: String, reason: String },
}

impl UserError {
    /// What to do about it.
    pub fn hint(&self) -> &'static str {
        "create the user in an earlier step (RUN adduser ...) or use numeric ids such as --chown=1001:1001"
    }
}

/// Resolves `spec` (`user`, `user:group`, numbers or names) to uid and gid.
///
/// BuildKit quietly falls back to 0 for a name it cannot find; hoist
/// reports it instead, since a copy owned by root where the user asked for
/// `app` is never what was meant.
pub fn resolve_chown(spec: &str, view: &FsView) -> Result<(u64, u64), UserError> {
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let (uid, mut gid) = match parse_id(user) {
        Id::Number(n) => (n, n),
        Id::Name(name) => {
            let passwd = read_file(view, "etc/passwd")?;
            lookup(&passwd, &name, 2)
                .map(|fields| (fields.0, fields.1))
                .ok_or(UserError::UnknownUser { name })?
        }
    };
    if let Some(group) = group {
        gid = match parse_id(group) {
            Id::Number(n) => n,
            Id::Name(name) => {
                let groups = read_file(view, "etc/group")?;
                lookup(&groups, &name, 2)
                    .map(|fields| fields.0)
                    .ok_or(UserError::UnknownGroup { name })?
            }
        };
    }
    Ok((uid, gid))
}

/// The supplementary groups of a step running as `spec` (a USER value),
/// as BuildKit gives them (executor/oci's GetUser over runc's
/// `GetExecUser`): with an explicit group (`user:group`), none; otherwise
/// every group of the image's /etc/group that lists the user's name as a
/// member, and not the primary group unless it lists the user. A numeric
/// user is looked up by uid in /etc/passwd for its name. (Docker 20.10's
/// BuildKit records `id` as `uid=1001(app) gid=1001(app)`, no `groups=`,
/// for a user no group lists: fixtures/differential/run-user.)
pub fn groups_of(spec: &str, uid: u64, _gid: u64, view: &FsView) -> Result<Vec<u64>, UserError> {
    if spec.contains(':') {
        return Ok(Vec::new());
    }
    let user = spec;
    let name = match parse_id(user) {
        Id::Name(name) => Some(name),
        Id::Number(_) => read_file(view, "etc/passwd")?.lines().find_map(|line| {
            let fields: Vec<&str> = line.trim().split(':').collect();
            (fields.get(2).and_then(|f| f.parse::<u64>().ok()) == Some(uid))
                .then(|| fields[0].to_string())
        }),
    };
    let mut groups = Vec::new();
    if let Some(name) = name {
        for line in read_file(view, "etc/group")?.lines() {
            let fields: Vec<&str> = line.trim().split(':').collect();
            let member = fields
                .get(3)
                .is_some_and(|m| m.split(',').any(|m| m.trim() == name));
            if let (true, Some(Ok(g))) = (member, fields.get(2).map(|f| f.parse::<u64>()))
                && !groups.contains(&g)
            {
                groups.push(g);
            }
        }
    }
    Ok(groups)
}

/// Finds `name` in a passwd- or group-style file: returns the numeric
/// fields at `index` and `index + 1` (the second is 0 when absent).
fn lookup(text: &str, name: &str, index: usize) -> Option<(u64, u64)> {
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line.split(':').collect();
        if fields.first() != Some(&name) {
            continue;
        }
        let first = fields.get(index)?.parse().ok()?;
        let second = fields
            .get(index + 1)
            .and_then(|f| f.parse().ok())
            .unwrap_or(0);
        return Some((first, second));
    }
    None
}

/// Reads a small text file of the image (empty when it does not exist).
pub fn read_file(view: &FsView, path: &str) -> Result<String, UserError> {
    let err = |reason: String| UserError::Read {
        path: format!("/{path}"),
        reason,
    };
    let resolved = view
        .resolve(path.as_bytes(), true)
        .map_err(|e| err(e.to_string()))?;
    let Some(entry) = view.get(&resolved) else {
        return Ok(String::new());
    };
    let entry = match &entry.kind {
        EntryKind::Hardlink { target } => match view.get(target) {
            Some(e) => e,
            None => return Ok(String::new()),
        },
        _ => entry,
    };
    let bytes = match &entry.kind {
        EntryKind::File { size, .. } if *size > MAX_USER_FILE => {
            return Err(err(format!("it is larger than {MAX_USER_FILE} bytes")));
        }
        EntryKind::File {
            content: Content::Bytes(b),
            ..
        } => b.clone(),
        EntryKind::File {
            content: Content::Path(p),
            ..
        } => std::fs::read(p).map_err(|e| err(e.to_string()))?,
        _ => return Ok(String::new()),
    };
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::LayerIndex;
    use hoist_oci::layer::tar::Entry;
    use std::sync::Arc;

    fn image() -> FsView {
        FsView::new(vec![Arc::new(LayerIndex::from_entries([
            Entry::dir("etc"),
            Entry::file(
                "etc/passwd",
                "root:x:0:0:root:/root:/bin/sh\n# comment\napp:x:1001:1002::/home/app:/bin/sh\n",
            ),
            Entry::file("etc/group", "root:x:0:\nappuser:x:1001:\nstaff:x:50:app\n"),
        ]))])
    }

    #[test]
    fn numbers_names_and_defaults() {
        let v = image();
        assert_eq!(resolve_chown("1001", &v), Ok((1001, 1001)));
        assert_eq!(resolve_chown("1001:50", &v), Ok((1001, 50)));
        assert_eq!(resolve_chown("root", &v), Ok((0, 0)));
        assert_eq!(
            resolve_chown("app", &v),
            Ok((1001, 1002)),
            "primary group from passwd"
        );
        assert_eq!(resolve_chown("app:staff", &v), Ok((1001, 50)));
        assert_eq!(resolve_chown("10:appuser", &v), Ok((10, 1001)));
        assert!(matches!(
            resolve_chown("nobody", &v),
            Err(UserError::UnknownUser { .. })
        ));
        assert!(matches!(
            resolve_chown("0:wheel", &v),
            Err(UserError::UnknownGroup { .. })
        ));
        assert!(matches!(
            resolve_chown("app", &FsView::default()),
            Err(UserError::UnknownUser { .. })
        ));
    }

    #[test]
    fn groups_come_from_group_membership() {
        let v = image();
        assert_eq!(groups_of("app", 1001, 1002, &v), Ok(vec![50]));
        assert_eq!(groups_of("1001", 1001, 1002, &v), Ok(vec![50]));
        assert_eq!(groups_of("1001:7", 1001, 7, &v), Ok(vec![]));
        assert_eq!(groups_of("app:staff", 1001, 50, &v), Ok(vec![]));
        assert_eq!(groups_of("root", 0, 0, &v), Ok(vec![]));
        assert_eq!(groups_of("4242", 4242, 4242, &v), Ok(vec![]));
    }
}
