//! Roots carried from one chroot step to the next of its stage
//! ([`carry`]): a chroot build copies its layers once per stage, not once
//! per step.

use super::chroot;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// A chroot step's root, restored to the merge of its layers plus the
/// step's own ([`carry`]), for the stage's next step: its diffIDs and
/// where it is.
static CARRIED: Mutex<Option<(Vec<String>, PathBuf)>> = Mutex::new(None);
/// The last chroot step's run directory and what restores its root.
static PENDING: Mutex<Option<(PathBuf, chroot::Restore)>> = Mutex::new(None);

/// Hands the root of the chroot step run in `dir` to the stage's next step,
/// once the step's layer is written: `layer_ids` are the stage's layers
/// now (its own last, if it made one). The root is put back to what the
/// layers hold (what the sandbox placed there goes), so the next step
/// starts from it instead of copying every layer again: a chroot build
/// copies its base once per stage, not once per step. Does nothing for a
/// step run otherwise, or whose root cannot be put back (the next step
/// then copies its layers).
pub fn carry(dir: &Path, layer_ids: Vec<String>) {
    let Some((pending_dir, restore)) = PENDING.lock().ok().and_then(|mut p| p.take()) else {
        return;
    };
    let root = dir.join("rootfs");
    let previous = CARRIED.lock().ok().and_then(|mut c| c.take());
    if let Some((_, old)) = previous {
        let _ = std::fs::remove_dir_all(old);
    }
    if pending_dir != dir || restore.apply().is_err() {
        let _ = std::fs::remove_dir_all(&root);
        return;
    }
    if let Ok(mut carried) = CARRIED.lock() {
        *carried = Some((layer_ids, root));
    }
}

/// Copies the files whose bytes `entries` take from the root of the step
/// run in `dir` into `dir/kept`, and points the entries there: a root
/// carried to the next step ([`carry`]) changes under its paths, while the
/// build reads a layer's files (a USER's /etc/passwd, `COPY --from`) until
/// it ends.
fn keep_contents(
    dir: &Path,
    entries: &mut [hoist_oci::layer::tar::Entry],
) -> Result<(), hoist_oci::layer::walk::WalkError> {
    use hoist_oci::layer::tar::{Content, EntryKind};
    let kept = dir.join("kept");
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| hoist_oci::layer::walk::WalkError::Io { path, source }
    };
    std::fs::create_dir_all(&kept).map_err(io(&kept))?;
    for (n, entry) in entries.iter_mut().enumerate() {
        if let EntryKind::File {
            content: Content::Path(path),
            ..
        } = &mut entry.kind
        {
            let copy = kept.join(n.to_string());
            std::fs::copy(&*path, &copy).map_err(io(path))?;
            *path = copy;
        }
    }
    Ok(())
}

/// Whether a root carried from the previous step holds exactly
/// `layer_ids` (then [`RunSpec::lowers`] may be left empty).
pub fn carried(layer_ids: &[String]) -> bool {
    CARRIED
        .lock()
        .is_ok_and(|c| c.as_ref().is_some_and(|(ids, _)| ids == layer_ids))
}

/// Moves the carried root to `root` if it holds exactly `layer_ids`.
pub(super) fn take_carried(layer_ids: &[String], root: &Path) -> bool {
    let Some((ids, carried)) = CARRIED.lock().ok().and_then(|mut c| c.take()) else {
        return false;
    };
    if ids == layer_ids && std::fs::rename(&carried, root).is_ok() {
        return true;
    }
    let _ = std::fs::remove_dir_all(carried);
    false
}

/// Records what restores the root of the chroot step just run in `dir`,
/// for [`carry`].
pub(super) fn pending(dir: &Path, restore: chroot::Restore) {
    if let Ok(mut pending) = PENDING.lock() {
        *pending = Some((dir.to_path_buf(), restore));
    }
}

/// For a chroot step whose root will be carried: copies the files the
/// layer's `entries` read out of the root ([`keep_contents`]) and keeps the
/// paths the sandbox created that the layer holds.
pub(super) fn keep(
    dir: &Path,
    entries: &mut [hoist_oci::layer::tar::Entry],
) -> Result<(), hoist_oci::layer::walk::WalkError> {
    let mut pending = PENDING.lock().ok();
    if let Some(Some((pending_dir, restore))) = pending.as_deref_mut()
        && pending_dir == dir
    {
        keep_contents(dir, entries)?;
        let root = dir.join("rootfs");
        restore.keep(
            entries
                .iter()
                .map(|e| root.join(std::ffi::OsStr::from_bytes(&e.path)))
                .collect(),
        );
    }
    Ok(())
}
