//! Layers as file systems: a layer blob read into its index (the entries
//! its tar headers list) with its file contents extracted once into
//! `snapshots/<diffID>/content` in the store, where COPY reads them.
//! Ownership and modes come from the tar headers (the index), never from
//! the extracted files, so extracting needs no privilege. Paths are
//! sanitised: nothing is ever written outside the snapshot directory, and
//! no symlink is created there.

use super::image::BaseError;
use super::view::LayerIndex;
use hoist_oci::chunks;
use hoist_oci::compression::{Compression, decompress};
use hoist_oci::layer::tar::{Content, Entry, EntryKind};
use hoist_oci::layer::{Contents, Escapes, read_entries};
use hoist_oci::{Digest, Sha256};
use hoist_store::Store;
use std::io::{self, Read};
use std::path::Path;
use std::sync::Arc;

/// A second extraction made from the same decompressed stream as a
/// layer's index and contents (RUN's overlay lower, see hoist's
/// `run::snapshot::extract_mirrored`): it extracts the tar it is given and
/// hard-links each regular file into the directory it is given at its
/// path in the layer, under plain directories, and says whether it did.
/// The contents are then those links, and nothing is written twice.
pub type Mirror<'m> = &'m (dyn Fn(&mut dyn Read, &Path) -> bool + Sync);

/// The index of one layer blob, its file contents extracted into the
/// store's snapshot for `diff_id` (once; later calls reuse them), through
/// `mirror` when given and the contents are not there yet.
pub fn load_layer(
    store: &Store,
    blob: &Digest,
    media: &str,
    diff_id: &Digest,
    mirror: Option<Mirror<'_>>,
) -> Result<Arc<LayerIndex>, BaseError> {
    let mut open = || -> Result<Box<dyn Read + Send>, BaseError> {
        let file = store.open_blob(blob).map_err(|source| BaseError::Store {
            what: "layer",
            digest: *blob,
            source,
        })?;
        decompressed(file, blob, media, diff_id)
    };
    load(store, blob, diff_id, mirror, &mut open)
}

/// A layer's tar, hashed as it is read: at its end, an error unless it is
/// the tar its diffID names (a config or a cache entry that lies about a
/// layer never gets its contents stored under that diffID).
struct CheckedTar<R> {
    inner: R,
    hasher: Option<Sha256>,
    blob: Digest,
    diff_id: Digest,
}

impl<R: Read> Read for CheckedTar<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        match (n, self.hasher.take()) {
            (0, Some(hasher)) if !buf.is_empty() => {
                let found = hasher.finish();
                if found != self.diff_id {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!(
                            "layer {} decompresses to {found}, but its diffID is {}",
                            self.blob, self.diff_id
                        ),
                    ));
                }
            }
            (_, Some(mut hasher)) => {
                hasher.update(&buf[..n]);
                self.hasher = Some(hasher);
            }
            (_, None) => {}
        }
        Ok(n)
    }
}

/// Whether [`load_layer_streamed`] would read the layer `diff_id`: its
/// contents are not in the store yet, and its media type is one the build
/// reads.
pub fn streams(store: &Store, media: &str, diff_id: &Digest) -> bool {
    Compression::of_layer(media).is_some() && !store.snapshot(diff_id).content().is_dir()
}

/// [`load_layer`] from `input`, the blob's bytes as they are downloaded,
/// read once: nothing is placed in the store unless `input` ends well (a
/// [`hoist_oci::chunks::ChunkReader`] ends only when the download was found
/// to be the blob). `None` where the layer needs a second reading (an
/// unusual archive): [`load_layer`] makes it from the stored blob later.
pub fn load_layer_streamed(
    store: &Store,
    input: impl Read + Send,
    blob: &Digest,
    media: &str,
    diff_id: &Digest,
    mirror: Option<Mirror<'_>>,
) -> Option<Arc<LayerIndex>> {
    let mut input = Some(input);
    let mut open = || -> Result<Box<dyn Read + Send + '_>, BaseError> {
        match input.take() {
            Some(input) => decompressed(input, blob, media, diff_id),
            None => Err(BaseError::Layer {
                digest: *blob,
                source: io::Error::other("a download is read once"),
            }),
        }
    };
    load(store, blob, diff_id, mirror, &mut open).ok()
}

/// `input`, a layer blob, decompressed as its media type says, and
/// checked to be the tar `diff_id` names when it ends (every reader here
/// reads to the end).
fn decompressed<'a>(
    input: impl Read + Send + 'a,
    blob: &Digest,
    media: &str,
    diff_id: &Digest,
) -> Result<Box<dyn Read + Send + 'a>, BaseError> {
    match Compression::of_layer(media) {
        Some(kind) => Ok(Box::new(CheckedTar {
            inner: decompress(kind, input),
            hasher: Some(Sha256::new()),
            blob: *blob,
            diff_id: *diff_id,
        })),
        None => Err(BaseError::Invalid {
            what: "layer",
            digest: *blob,
            reason: format!(
                "media type {media} is not a layer type (tar, gzip or zstd) hoist knows"
            ),
        }),
    }
}

/// [`load_layer`], reading the layer's tar from what `tar` opens (once,
/// or again for the unusual archives an extraction cannot serve).
fn load<'a>(
    store: &Store,
    blob: &Digest,
    diff_id: &Digest,
    mirror: Option<Mirror<'_>>,
    tar: &mut dyn FnMut() -> Result<Box<dyn Read + Send + 'a>, BaseError>,
) -> Result<Arc<LayerIndex>, BaseError> {
    let layer_err = |source| BaseError::Layer {
        digest: *blob,
        source,
    };
    let snapshot = store.snapshot(diff_id);
    let content = snapshot.content();
    // Finished contents are a directory renamed into place whole: readers
    // never see one half written, and two builds extracting the same layer
    // at once each write their own copy (the first rename wins). The
    // snapshot directory itself may already exist, holding the RUN
    // sandbox's `rootfs` of the same layer (crates/run/src/snapshot.rs).
    let finished = content.is_dir();
    let index_path = snapshot.index();
    if finished && let Some(entries) = super::index_file::read(&index_path, &content) {
        return Ok(Arc::new(LayerIndex::from_entries(entries)));
    }
    let temp_content = snapshot.partial("content");
    if !finished {
        std::fs::create_dir_all(&temp_content).map_err(layer_err)?;
    }
    let read = |tar: &mut dyn FnMut() -> Result<Box<dyn Read + Send + 'a>, BaseError>,
                contents: Contents<'_>|
     -> Result<Vec<Entry>, BaseError> {
        read_entries(tar()?, contents, Escapes::Skip).map_err(layer_err)
    };
    // A build that runs steps needs the layer as RUN's overlay lower too:
    // one extraction makes both, the contents hard-linked from it, and
    // one decompression feeds it and the index.
    let mirrored = match (finished, mirror) {
        (false, Some(mirror)) => extract_and_index(tar()?, mirror, &temp_content),
        _ => None,
    };
    let entries = match (finished, mirrored) {
        (true, _) => read(tar, Contents::Known(&content)),
        (false, Some(entries)) => entries.map_err(layer_err).and_then(|entries| {
            if contents_present(&entries) {
                Ok(entries)
            } else {
                // The extraction placed some file elsewhere than the index
                // says (an unusual archive): extract the contents here.
                let _ = std::fs::remove_dir_all(&temp_content);
                std::fs::create_dir_all(&temp_content).map_err(layer_err)?;
                read(tar, Contents::AtPath(&temp_content))
            }
        }),
        (false, None) => read(tar, Contents::AtPath(&temp_content)),
    };
    let mut entries = match entries {
        Ok(entries) => entries,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&temp_content);
            return Err(e);
        }
    };
    if !finished && std::fs::rename(&temp_content, &content).is_err() {
        // Another build finished the same contents first: use them.
        let _ = std::fs::remove_dir_all(&temp_content);
        if !content.is_dir() {
            return Err(layer_err(io::Error::other(format!(
                "cannot move the extracted layer into {}",
                content.display()
            ))));
        }
    }
    if !finished {
        for entry in &mut entries {
            if let EntryKind::File {
                content: Content::Path(path),
                ..
            } = &mut entry.kind
                && let Ok(rest) = path.strip_prefix(&temp_content)
            {
                *path = content.join(rest);
            }
        }
    }
    // Saved for later builds; without it they read the layer again.
    let _ = super::index_file::write(&index_path, &entries);
    Ok(Arc::new(LayerIndex::from_entries(entries)))
}

/// Extracts a layer through `mirror`, its regular files hard-linked into
/// `content`, and reads its index from the same decompressed stream: one
/// thread decompresses and shares each chunk with the extraction and the
/// index reader, each on its own thread. `None` when the extraction fails
/// (the mirror's owner meets the failure again when it needs the
/// extraction): the caller extracts the contents itself. Both read `tar`
/// to its end, so a stream that fails there fails both.
fn extract_and_index(
    tar: Box<dyn Read + Send + '_>,
    mirror: Mirror<'_>,
    content: &Path,
) -> Option<io::Result<Vec<Entry>>> {
    let (mut feed, mut readers) = chunks::channel(2);
    let (mut to_index, mut to_extract) = (readers.pop()?, readers.pop()?);
    std::thread::scope(|scope| {
        scope.spawn(move || -> io::Result<()> {
            let mut tar = tar;
            loop {
                let mut chunk = feed.buffer();
                (&mut tar)
                    .take(chunks::CHUNK_SIZE as u64)
                    .read_to_end(&mut chunk)?;
                if chunk.is_empty() {
                    return feed.finish();
                }
                // Either reader gone (it failed) ends the feed: the other
                // sees the stream cut, and fails too.
                feed.send(chunk)?;
            }
        });
        let index = scope
            .spawn(move || read_entries(&mut to_index, Contents::Known(content), Escapes::Skip));
        let extracted = mirror(&mut to_extract, content);
        drop(to_extract);
        let entries = index
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("panicked")));
        extracted.then_some(entries)
    })
}

/// Whether every file the index keeps (the last entry of each path) is a
/// regular file of its size at its content path. Whiteouts and opaque
/// markers are left out: their contents are never read (and an extraction
/// turns them into what they mean).
fn contents_present(entries: &[Entry]) -> bool {
    let mut seen = std::collections::HashSet::new();
    entries.iter().rev().all(|entry| {
        let name = entry.path.rsplit(|&b| b == b'/').next().unwrap_or_default();
        if !seen.insert(entry.path.as_slice())
            || name.starts_with(hoist_oci::layer::tar::WHITEOUT_PREFIX.as_bytes())
        {
            return true;
        }
        match &entry.kind {
            EntryKind::File {
                size,
                content: Content::Path(path),
            } => {
                matches!(std::fs::symlink_metadata(path), Ok(m) if m.is_file() && m.len() == *size)
            }
            _ => true,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use hoist_oci::media_type;

    /// Where the index keeps the bytes of the regular file at `path`.
    fn content_path<'a>(index: &'a LayerIndex, path: &[u8]) -> &'a Path {
        match index.get(path) {
            Some(Entry {
                kind:
                    EntryKind::File {
                        content: Content::Path(path),
                        ..
                    },
                ..
            }) => path,
            other => panic!(
                "{} is not indexed as a file: {other:?}",
                String::from_utf8_lossy(path)
            ),
        }
    }

    /// A mirror as RUN's snapshot is one: an extraction into the layer's
    /// `mirrored` directory (made whole, then renamed), its regular files
    /// linked into the contents.
    fn mirror(store: &Store, diff_id: &Digest) -> impl Fn(&mut dyn Read, &Path) -> bool + Sync {
        let snapshot = store.snapshot(diff_id);
        move |input, content| {
            let temp = snapshot.partial("mirrored");
            std::fs::create_dir_all(&temp).unwrap();
            let links = hoist_oci::layer::Links {
                sources: None,
                mirror: Some(content),
            };
            let options = hoist_oci::layer::ExtractOptions::default();
            let done = hoist_oci::layer::extract_with(input, &temp, &options, links).is_ok();
            if done {
                std::fs::rename(&temp, snapshot.rootfs("mirrored")).unwrap();
            } else {
                std::fs::remove_dir_all(&temp).unwrap();
            }
            done
        }
    }

    /// The uncompressed layer `tar` stored and loaded with [`mirror`];
    /// returns its index and diffID.
    fn load_mirrored(store: &Store, tar: &[u8]) -> (Arc<LayerIndex>, Digest) {
        let (blob, _) = store.put_blob_bytes(tar, None).unwrap();
        let diff_id = Digest::of(tar);
        let mirror = mirror(store, &diff_id);
        let index = load_layer(
            store,
            &blob,
            media_type::OCI_LAYER_TAR,
            &diff_id,
            Some(&mirror),
        );
        (index.unwrap(), diff_id)
    }

    #[test]
    fn one_extraction_serves_the_index_and_the_mirror() {
        use std::os::unix::fs::MetadataExt;
        let (_dir, store) = hoist_store::testing::root_store("chown, mknod");
        let entries = [
            Entry::dir(b"etc".to_vec()),
            Entry::file(b"etc/.wh.gone".to_vec(), Vec::new()),
            Entry::file(
                b"etc/passwd".to_vec(),
                b"root:x:0:0::/root:/bin/sh\n".to_vec(),
            ),
        ];
        let bytes =
            hoist_oci::layer::tar::write_tar(&entries, Default::default(), Vec::new()).unwrap();
        let (index, diff_id) = load_mirrored(&store, &bytes);
        let snapshot = store.snapshot(&diff_id).dir().to_path_buf();
        let rootfs = snapshot.join("mirrored");
        let path = content_path(&index, b"etc/passwd");
        assert!(
            path.starts_with(snapshot.join("content")),
            "{}",
            path.display()
        );
        assert_eq!(
            std::fs::metadata(path).unwrap().ino(),
            std::fs::metadata(rootfs.join("etc/passwd")).unwrap().ino(),
            "the index's contents are the mirror's files, linked"
        );
    }

    #[test]
    fn a_streamed_layer_is_placed_only_when_its_stream_ends_whole() {
        use std::io::Write;
        let (_dir, store) = hoist_store::testing::root_store("chown, mknod");
        // An uncompressed layer of exactly two chunks: its end-of-archive
        // blocks arrive whole before the stream says how it ended, so an
        // extraction that stopped at them would take a cut stream as good.
        let tar = |size: usize| {
            let entries = [
                Entry::dir(b"etc".to_vec()),
                Entry::file(b"etc/hostname".to_vec(), vec![b'h'; size]),
            ];
            hoist_oci::layer::tar::write_tar(&entries, Default::default(), Vec::new()).unwrap()
        };
        let size = 2 * chunks::CHUNK_SIZE - tar(0).len();
        let bytes = tar(size);
        assert_eq!(bytes.len(), 2 * chunks::CHUNK_SIZE);
        // Uncompressed: the blob is the tar.
        let (blob, diff_id) = (Digest::of(&bytes), Digest::of(&bytes));
        let media = media_type::OCI_LAYER_TAR;
        let snapshot = store.snapshot(&diff_id).dir().to_path_buf();
        let mirror = mirror(&store, &diff_id);
        let stream = |whole: bool, with_mirror: bool| {
            let (mut writer, reader) = chunks::one_reader();
            let mirror: Option<Mirror<'_>> = with_mirror.then_some(&mirror);
            std::thread::scope(|scope| {
                let read = scope
                    .spawn(|| load_layer_streamed(&store, reader, &blob, media, &diff_id, mirror));
                writer.write_all(&bytes).unwrap();
                if whole {
                    writer.finish().unwrap();
                } else {
                    // Every byte, but no word that they were the blob.
                    writer.flush().unwrap();
                    drop(writer);
                }
                read.join().unwrap()
            })
        };
        // Contents alone (a build without RUN), and with the mirror.
        assert!(stream(false, false).is_none());
        assert!(!snapshot.join("content").exists());
        assert!(stream(false, true).is_none());
        assert!(!snapshot.join("content").exists());
        assert!(!snapshot.join("mirrored").exists());
        let leftovers: Vec<_> = std::fs::read_dir(&snapshot)
            .map(|d| d.map(|e| e.unwrap().file_name()).collect())
            .unwrap_or_default();
        assert!(leftovers.is_empty(), "{leftovers:?}");

        let index = stream(true, true).unwrap();
        let hostname = std::fs::read(content_path(&index, b"etc/hostname")).unwrap();
        assert_eq!(hostname, vec![b'h'; size]);
        let rootfs = snapshot.join("mirrored");
        assert_eq!(
            std::fs::metadata(rootfs.join("etc/hostname"))
                .unwrap()
                .len(),
            size as u64
        );
        assert!(!streams(&store, media, &diff_id), "nothing left to stream");
    }

    #[test]
    fn a_layer_the_mirror_refuses_is_still_indexed_without_blocking() {
        let (_dir, store) = hoist_store::testing::root_store("chown");
        // The extraction refuses the first entry (a hard link to nothing);
        // the rest is more than the channels between the threads hold, so
        // a feed that kept writing to the extraction would block.
        let big: Vec<u8> = (0..8 * chunks::CHUNK_SIZE as u32)
            .map(|i| (i % 251) as u8)
            .collect();
        let bytes = hoist_oci::testing::raw_tar(&[
            ("nowhere", ::tar::EntryType::Link, "missing", b""),
            ("big", ::tar::EntryType::Regular, "", &big),
        ]);
        let (index, diff_id) = load_mirrored(&store, &bytes);
        let path = content_path(&index, b"big");
        assert_eq!(std::fs::read(path).unwrap(), big);
        assert!(!store.snapshot(&diff_id).rootfs("mirrored").exists());
    }
}
