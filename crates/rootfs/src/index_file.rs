//! A layer's entries saved next to its extracted contents
//! (`snapshots/<diffID>/index`), so that later builds read a layer's index
//! without decompressing the layer again.
//!
//! The file holds what the tar headers said (paths, kinds, modes, owners,
//! times, link targets, extended attributes, sizes), in the tar's order;
//! file contents stay in `content/`, at each entry's path. It ends with the
//! SHA-256 of everything before it: a file cut short or changed on disk is
//! refused, and the caller reads the layer instead.

use hoist_oci::digest::Sha256;
use hoist_oci::layer::tar::{Content, Entry, EntryKind};
use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::Path;

/// The first bytes of the file; a change of encoding changes them.
const MAGIC: &[u8; 8] = b"hoistix1";

/// Writes `entries` to `path` (through a temporary file renamed into place,
/// so readers see all of it or nothing).
pub fn write(path: &Path, entries: &[Entry]) -> io::Result<()> {
    let mut out = Vec::with_capacity(entries.len() * 64);
    out.extend_from_slice(MAGIC);
    put_u64(&mut out, entries.len() as u64);
    for entry in entries {
        encode(&mut out, entry);
    }
    let mut h = Sha256::new();
    h.update(&out);
    let sum = h.finish();
    out.extend_from_slice(sum.as_bytes());
    let temp = path.with_extension(format!("partial-{}", std::process::id()));
    let result = (|| {
        let mut file = std::fs::File::create(&temp)?;
        file.write_all(&out)?;
        file.sync_all()?;
        std::fs::rename(&temp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}

/// The entries saved in `path`, their contents in `content`; `None` when
/// there is no such file or it is damaged.
pub fn read(path: &Path, content: &Path) -> Option<Vec<Entry>> {
    let data = std::fs::read(path).ok()?;
    let (body, sum) = data.split_at_checked(data.len().checked_sub(32)?)?;
    let mut h = Sha256::new();
    h.update(body);
    if h.finish().as_bytes() != sum {
        return None;
    }
    let mut input = Reader(body.strip_prefix(MAGIC.as_slice())?);
    let count = input.u64()?;
    // Every entry takes more than 32 bytes: a count beyond that is damage.
    if count > body.len() as u64 / 32 {
        return None;
    }
    let mut entries = Vec::with_capacity(count as usize);
    for _ in 0..count {
        entries.push(decode(&mut input, content)?);
    }
    input.0.is_empty().then_some(entries)
}

fn put_u64(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(&n.to_le_bytes());
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_u64(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn encode(out: &mut Vec<u8>, entry: &Entry) {
    put_bytes(out, &entry.path);
    put_u64(out, entry.mode.into());
    put_u64(out, entry.uid);
    put_u64(out, entry.gid);
    put_u64(out, entry.mtime);
    put_u64(out, entry.xattrs.len() as u64);
    for (name, value) in &entry.xattrs {
        put_bytes(out, name);
        put_bytes(out, value);
    }
    match &entry.kind {
        EntryKind::File { size, .. } => {
            out.push(0);
            put_u64(out, *size);
        }
        EntryKind::Dir => out.push(1),
        EntryKind::Symlink { target } => {
            out.push(2);
            put_bytes(out, target);
        }
        EntryKind::Hardlink { target } => {
            out.push(3);
            put_bytes(out, target);
        }
        EntryKind::CharDevice { major, minor } => {
            out.push(4);
            put_u64(out, (u64::from(*major) << 32) | u64::from(*minor));
        }
        EntryKind::BlockDevice { major, minor } => {
            out.push(5);
            put_u64(out, (u64::from(*major) << 32) | u64::from(*minor));
        }
        EntryKind::Fifo => out.push(6),
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = self.0.split_at_checked(n)?;
        self.0 = rest;
        Some(head)
    }

    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }

    fn bytes(&mut self) -> Option<Vec<u8>> {
        let n = usize::try_from(self.u64()?).ok()?;
        Some(self.take(n)?.to_vec())
    }
}

fn decode(input: &mut Reader<'_>, content: &Path) -> Option<Entry> {
    use std::os::unix::ffi::OsStrExt;
    let path = input.bytes()?;
    let mode = u32::try_from(input.u64()?).ok()?;
    let uid = input.u64()?;
    let gid = input.u64()?;
    let mtime = input.u64()?;
    let mut xattrs = BTreeMap::new();
    for _ in 0..input.u64()? {
        let name = input.bytes()?;
        xattrs.insert(name, input.bytes()?);
    }
    let device = |n: u64| ((n >> 32) as u32, n as u32);
    let kind = match input.u8()? {
        0 => EntryKind::File {
            size: input.u64()?,
            content: Content::Path(content.join(std::ffi::OsStr::from_bytes(&path))),
        },
        1 => EntryKind::Dir,
        2 => EntryKind::Symlink {
            target: input.bytes()?,
        },
        3 => EntryKind::Hardlink {
            target: input.bytes()?,
        },
        4 => {
            let (major, minor) = device(input.u64()?);
            EntryKind::CharDevice { major, minor }
        }
        5 => {
            let (major, minor) = device(input.u64()?);
            EntryKind::BlockDevice { major, minor }
        }
        6 => EntryKind::Fifo,
        _ => return None,
    };
    Some(Entry {
        path,
        kind,
        mode,
        uid,
        gid,
        mtime,
        xattrs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(content: &Path) -> Vec<Entry> {
        let mut file = Entry::file(
            b"etc/passwd".to_vec(),
            b"root:x:0:0::/root:/bin/sh\n".to_vec(),
        )
        .with_mode(0o644)
        .with_owner(0, 42);
        file.kind = EntryKind::File {
            size: 26,
            content: Content::Path(content.join("etc/passwd")),
        };
        file.mtime = 1_700_000_000;
        file.xattrs
            .insert(b"security.capability".to_vec(), vec![1, 0, 0, 2]);
        let mut entries = vec![
            Entry::dir(b"etc".to_vec()).with_mode(0o755),
            file,
            Entry::dir(b"dev".to_vec()),
        ];
        for (path, kind) in [
            (
                &b"bin/sh"[..],
                EntryKind::Symlink {
                    target: b"busybox".to_vec(),
                },
            ),
            (
                b"etc/group",
                EntryKind::Hardlink {
                    target: b"etc/passwd".to_vec(),
                },
            ),
            (b"dev/null", EntryKind::CharDevice { major: 1, minor: 3 }),
            (b"dev/sda", EntryKind::BlockDevice { major: 8, minor: 0 }),
            (b"run/fifo", EntryKind::Fifo),
            (
                b"etc/.wh.gone",
                EntryKind::File {
                    size: 0,
                    content: Content::Path(content.join("etc/.wh.gone")),
                },
            ),
        ] {
            let mut e = Entry::dir(path.to_vec()).with_owner(1001, 1001);
            e.kind = kind;
            e.mode = 0o4755;
            entries.push(e);
        }
        entries
    }

    #[test]
    fn entries_read_back_as_written() {
        let dir = tempfile::tempdir().unwrap();
        let content = dir.path().join("content");
        let entries = sample(&content);
        let file = dir.path().join("index");
        write(&file, &entries).unwrap();
        assert_eq!(read(&file, &content), Some(entries));
        assert!(read(&dir.path().join("missing"), &content).is_none());
    }

    #[test]
    fn a_damaged_or_cut_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let content = dir.path().join("content");
        let file = dir.path().join("index");
        write(&file, &sample(&content)).unwrap();
        let good = std::fs::read(&file).unwrap();
        for cut in [0, 7, 8, 40, good.len() / 2, good.len() - 1] {
            std::fs::write(&file, &good[..cut]).unwrap();
            assert!(read(&file, &content).is_none(), "cut at {cut}");
        }
        let mut flipped = good.clone();
        flipped[20] ^= 1;
        std::fs::write(&file, &flipped).unwrap();
        assert!(read(&file, &content).is_none());
        // A checksum over a body that does not decode is refused too.
        let mut body = MAGIC.to_vec();
        put_u64(&mut body, 1);
        body.extend_from_slice(&[9; 40]);
        let mut h = Sha256::new();
        h.update(&body);
        body.extend_from_slice(h.finish().as_bytes());
        std::fs::write(&file, &body).unwrap();
        assert!(read(&file, &content).is_none());
    }
}
