//! Helpers for the tests of hoist's crates (feature `testing`, enabled
//! only as a dev-dependency): never part of a build.

/// Fails the test unless it runs as root; `needs` says for what.
pub fn assert_root(needs: &str) {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(euid, 0, "this test needs root ({needs})");
}

/// A tar written field by field with the `tar` crate's raw header, so
/// that names and links hoist's own writer refuses (`..`, absolute, a
/// link to nothing) can be tested. Entries: name, type, link target,
/// bytes; directories get mode 0755, the rest 0644, all owned by 0:0 with
/// mtime 0.
pub fn raw_tar(entries: &[(&str, tar::EntryType, &str, &[u8])]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, kind, link, data) in entries {
        let mut header = tar::Header::new_ustar();
        let ustar = header.as_ustar_mut().unwrap();
        ustar.name[..name.len()].copy_from_slice(name.as_bytes());
        ustar.linkname[..link.len()].copy_from_slice(link.as_bytes());
        header.set_entry_type(*kind);
        header.set_size(data.len() as u64);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        header.set_mode(if *kind == tar::EntryType::Directory {
            0o755
        } else {
            0o644
        });
        header.set_cksum();
        builder.append(&header, *data).unwrap();
    }
    builder.into_inner().unwrap()
}
