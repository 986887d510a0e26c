//! Parallel gzip whose bytes do not depend on the number of threads, and
//! that can reuse the compressed blocks of an earlier layer.
//!
//! The input is cut into blocks at content-defined points (as rsync and
//! casync cut files): a gear hash over the last 64 bytes decides where a
//! block ends, at least [`MIN_BLOCK`] and at most [`MAX_BLOCK`] bytes after
//! the previous cut, about [`BLOCK_SIZE`] on average. An edit in the middle
//! of the input therefore changes only the blocks around it: the cuts after
//! it fall on the same bytes as before. Each block is deflated on a worker
//! thread by its own raw deflate stream, primed with the last 32 KiB of the
//! previous block as its dictionary (so matches still reach back across the
//! cut) and ended with a sync flush (an empty stored block that byte-aligns
//! the output); the last block ends the deflate stream. The compressed
//! blocks are written in order between one gzip header (mtime 0, no name,
//! OS byte 255 "unknown") and a trailer whose CRC-32 is combined from the
//! blocks' CRCs. A block's output depends only on its own bytes and its
//! predecessor's tail, never on which worker ran it or when, so 1, 2 or 8
//! threads give the same file.
//!
//! Since a block's output is a function of (dictionary, bytes, last, level),
//! each block gets a key, the SHA-256 of exactly those inputs (and of
//! [`FORMAT`]); [`GzipSummary::blocks`] lists every block's key with where
//! its bytes sit in the output. Given a [`Memo`] of an earlier output, a
//! worker copies the bytes of a block with the same key instead of
//! deflating it again. The result is byte-identical either way: reuse
//! changes the time a layer takes, never its digest.
//!
//! [`compress`] runs a producer closure that writes into a [`GzipSink`]
//! while workers compress behind it; at most a few blocks per thread are in
//! flight, so memory stays bounded whatever the input size. It never holds
//! the whole input or output in memory, and never reorders output bytes.
//!
//! The backend is flate2's `zlib-rs` (pure Rust zlib): a different deflate
//! implementation, level or block size gives different (still valid)
//! bytes and so different layer digests; the golden-digest test in
//! `layer::tests` guards all three.
//!
//! Measured on the 2-core machine described in `bench/README.md` (medians
//! of 5 interleaved runs; the machine is shared, single runs vary by up to
//! 80%), on 100 MiB of mixed input (alternating 1 MiB runs of log lines
//! and random bytes), level 6. hoist: `cargo run --release --example
//! gzip_speed -- /tmp/mixed.bin`, which also writes the input; the others:
//! `time gzip -6 -c /tmp/mixed.bin >/dev/null` (gzip 1.12) and
//! `time pigz -6 -p N -c /tmp/mixed.bin >/dev/null` (pigz 2.6).
//!
//! | compressor         | time   | MB/s | output bytes | vs `gzip -6` |
//! | ------------------ | ------ | ---- | ------------ | ------------ |
//! | hoist, 1 thread    | 1.41 s |   74 | 58,283,889   | +0.05%       |
//! | hoist, 2 threads   | 0.82 s |  128 | 58,283,889   | +0.05%       |
//! | `gzip -6`          | 1.84 s |   57 | 58,253,009   |              |
//! | `pigz -6 -p 1`     | 1.56 s |   67 | 58,173,713   | -0.14%       |
//! | `pigz -6 -p 2`     | 0.82 s |  128 | 58,173,713   | -0.14%       |

use std::collections::{BTreeMap, HashMap};
use std::io::{self, Read, Write};
use std::num::NonZeroUsize;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, mpsc};
use std::thread;

use flate2::{Compress, Compression, Crc, FlushCompress, Status};

/// The average bytes of input per independently compressed block. The cut
/// rule ([`MIN_BLOCK`], [`MAX_BLOCK`], [`CUT_MASK`], [`GEAR`]) is part of
/// the output format: changing it changes every layer digest.
pub const BLOCK_SIZE: usize = 128 * 1024;
/// No block is cut before this many bytes (the last one may be shorter).
pub const MIN_BLOCK: usize = 64 * 1024;
/// A block is cut here if the hash found no cut point before.
pub const MAX_BLOCK: usize = 512 * 1024;
/// A cut falls after a byte where the gear hash has these bits clear: one
/// chance in 2^16 per byte past [`MIN_BLOCK`], so blocks average about
/// `MIN_BLOCK + 64 KiB` = [`BLOCK_SIZE`]. The top bits: they depend on the
/// last 64 bytes, the low ones only on the last few.
const CUT_MASK: u64 = 0xffff << 48;
/// Changes whenever the bytes a block compresses to may change for the
/// same inputs (deflate backend, framing): part of every block key, so
/// blocks of an older hoist are never reused.
pub const FORMAT: &str = "hoist-gzip-blocks-1 zlib-rs";

/// The gear hash's table: 256 fixed pseudo-random words (splitmix64 from
/// a fixed seed).
const GEAR: [u64; 256] = {
    let mut table = [0u64; 256];
    let mut state: u64 = 0x686f_6973_745f_6364; // "hoist_cd"
    let mut i = 0;
    while i < 256 {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        table[i] = z ^ (z >> 31);
        i += 1;
    }
    table
};

/// Deflate's window: the most a match can reach back, so the most of the
/// previous block worth giving as a dictionary.
const DICT_SIZE: usize = 32 * 1024;
/// Blocks in flight per worker: one being compressed, one queued, one
/// waiting to be written in order.
const BLOCKS_PER_THREAD: usize = 3;
/// The compression level hoist's layers use unless told otherwise (gzip's
/// default, the same as Docker and BuildKit).
pub const DEFAULT_LEVEL: u32 = 6;

/// The gzip header: magic, deflate, no flags, mtime 0, no extra flags, OS
/// 255 (unknown) so the bytes do not name the build machine.
const HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255];

/// How to compress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GzipOptions {
    /// Deflate level 0-9; part of the output format.
    pub level: u32,
    /// Worker threads; does not change the output.
    pub threads: NonZeroUsize,
}

impl Default for GzipOptions {
    fn default() -> GzipOptions {
        GzipOptions {
            level: DEFAULT_LEVEL,
            threads: thread::available_parallelism().unwrap_or(NonZeroUsize::MIN),
        }
    }
}

/// What was compressed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GzipSummary {
    /// Bytes of input.
    pub uncompressed: u64,
    /// Bytes of gzip output, header and trailer included.
    pub compressed: u64,
    /// CRC-32 of the input, as stored in the trailer.
    pub crc: u32,
    /// Every block, in order: its key and where its bytes are.
    pub blocks: Vec<BlockRecord>,
    /// How many blocks were copied from a [`Memo`] instead of deflated.
    pub reused: usize,
    /// How many blocks the memo held but whose stored bytes no longer
    /// matched their digest: deflated again, the output unchanged.
    pub refused: usize,
}

/// One compressed block of an output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockRecord {
    /// SHA-256 of [`FORMAT`], the level, the last-block flag, the
    /// dictionary and the input bytes: everything the output depends on.
    pub key: [u8; 32],
    /// Where the block's bytes start in the gzip output.
    pub offset: u64,
    pub len: u64,
    /// SHA-256 of the block's compressed bytes: a memo copies them into a
    /// new output only if they still hash to it.
    pub digest: [u8; 32],
}

/// The first line of an encoded block index. Version 1 had no block
/// digests: such an index is not read, so its blocks are never copied
/// unchecked.
const INDEX_MAGIC: &[u8] = b"hoist block index 2\n";

/// Bytes per block in an encoded index.
const RECORD: usize = 32 + 8 + 8 + 32;

/// Encodes block records for storage: the magic line, then 80 bytes per
/// block (key, offset and length little-endian, digest).
pub fn encode_index(blocks: &[BlockRecord]) -> Vec<u8> {
    let mut out = Vec::with_capacity(INDEX_MAGIC.len() + blocks.len() * RECORD);
    out.extend_from_slice(INDEX_MAGIC);
    for b in blocks {
        out.extend_from_slice(&b.key);
        out.extend_from_slice(&b.offset.to_le_bytes());
        out.extend_from_slice(&b.len.to_le_bytes());
        out.extend_from_slice(&b.digest);
    }
    out
}

/// Decodes [`encode_index`]'s output; `None` if it is not one.
pub fn decode_index(bytes: &[u8]) -> Option<Vec<BlockRecord>> {
    let body = bytes.strip_prefix(INDEX_MAGIC)?;
    if body.len() % RECORD != 0 {
        return None;
    }
    let word = |b: &[u8]| u64::from_le_bytes(b.try_into().expect("8 bytes"));
    Some(
        body.chunks_exact(RECORD)
            .map(|c| BlockRecord {
                key: c[..32].try_into().expect("32 bytes"),
                offset: word(&c[32..40]),
                len: word(&c[40..48]),
                digest: c[48..80].try_into().expect("32 bytes"),
            })
            .collect(),
    )
}

/// The blocks of an earlier output (a stored layer blob and its index),
/// which workers copy instead of deflating the same inputs again. Every
/// block is checked against its digest as it is read: a damaged block
/// (a bit flipped on disk, an index that lies) is deflated again, never
/// copied, and counted in [`GzipSummary::refused`].
pub struct Memo {
    file: std::fs::File,
    /// Only blocks that lie within the file: offset, length, digest.
    blocks: HashMap<[u8; 32], (u64, u64, [u8; 32])>,
    refused: AtomicUsize,
}

impl Memo {
    /// A memo over `file`, the output `blocks` describe. Records that do
    /// not fit in the file are left out.
    pub fn new(file: std::fs::File, blocks: &[BlockRecord]) -> io::Result<Memo> {
        let size = file.metadata()?.len();
        let blocks = blocks
            .iter()
            .filter(|b| b.offset.checked_add(b.len).is_some_and(|end| end <= size))
            .map(|b| (b.key, (b.offset, b.len, b.digest)))
            .collect();
        Ok(Memo {
            file,
            blocks,
            refused: AtomicUsize::new(0),
        })
    }

    /// How many blocks this memo has refused so far.
    fn refused(&self) -> usize {
        self.refused.load(Ordering::Relaxed)
    }

    /// The stored bytes of the block with this key, if any and intact.
    fn get(&self, key: &[u8; 32]) -> Option<Vec<u8>> {
        use std::os::unix::fs::FileExt;
        let &(offset, len, digest) = self.blocks.get(key)?;
        let mut bytes = vec![0; usize::try_from(len).ok()?];
        let intact =
            self.file.read_exact_at(&mut bytes, offset).is_ok() && block_digest(&bytes) == digest;
        if !intact {
            self.refused.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        Some(bytes)
    }
}

/// The SHA-256 of a block's compressed bytes.
fn block_digest(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes).into()
}

impl std::fmt::Debug for Memo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Memo")
            .field("blocks", &self.blocks.len())
            .finish_non_exhaustive()
    }
}

/// Why compression failed.
#[derive(Debug, thiserror::Error)]
pub enum GzipError {
    #[error("compression level {level} is out of range; use 0 to 9")]
    Level { level: u32 },
    #[error("cannot write compressed output")]
    Write { source: io::Error },
    #[error("cannot read the input to compress")]
    Read { source: io::Error },
    #[error("deflate failed on block {block}")]
    Deflate {
        block: u64,
        source: flate2::CompressError,
    },
    #[error("a compression worker panicked on block {block}")]
    Panicked { block: u64 },
    #[error("a compression worker stopped before finishing its blocks")]
    WorkerLost,
}

/// One block for a worker.
struct Job {
    index: u64,
    data: Vec<u8>,
    dict: Vec<u8>,
    last: bool,
}

/// A worker's result for one block.
struct Done {
    index: u64,
    result: Result<Vec<u8>, GzipError>,
    crc: Crc,
    key: [u8; 32],
    /// SHA-256 of the block's bytes (`result`).
    digest: [u8; 32],
    reused: bool,
}

/// The `Write` end handed to [`compress`]'s producer.
pub struct GzipSink<'a, W: Write> {
    jobs: Option<mpsc::SyncSender<Job>>,
    done: mpsc::Receiver<Done>,
    out: &'a mut W,
    block: Vec<u8>,
    dict: Vec<u8>,
    next_index: u64,
    next_write: u64,
    waiting: BTreeMap<u64, Done>,
    max_in_flight: u64,
    crc: Crc,
    uncompressed: u64,
    compressed: u64,
    /// The gear hash of the bytes since the last cut.
    hash: u64,
    blocks: Vec<BlockRecord>,
    reused: usize,
    /// The first failure, kept so the caller sees it rather than the
    /// generic error the producer got from `write`.
    error: Option<GzipError>,
}

impl<W: Write> GzipSink<'_, W> {
    fn fail(&mut self, error: GzipError) -> io::Error {
        let message = error.to_string();
        self.error.get_or_insert(error);
        io::Error::other(message)
    }

    fn check(&self) -> io::Result<()> {
        match &self.error {
            Some(error) => Err(io::Error::other(error.to_string())),
            None => Ok(()),
        }
    }

    /// Hands the current block to the workers, first writing out finished
    /// blocks until there is room in flight.
    fn dispatch(&mut self, last: bool) -> Result<(), GzipError> {
        while self.next_index - self.next_write >= self.max_in_flight {
            self.receive_one()?;
        }
        let data = std::mem::replace(&mut self.block, Vec::with_capacity(BLOCK_SIZE));
        self.hash = 0;
        let dict = std::mem::take(&mut self.dict);
        self.dict = data[data.len().saturating_sub(DICT_SIZE)..].to_vec();
        let job = Job {
            index: self.next_index,
            data,
            dict,
            last,
        };
        let jobs = self.jobs.as_ref().ok_or(GzipError::WorkerLost)?;
        jobs.send(job).map_err(|_| GzipError::WorkerLost)?;
        self.next_index += 1;
        Ok(())
    }

    /// Waits for one block and writes every block now ready, in order.
    fn receive_one(&mut self) -> Result<(), GzipError> {
        let done = self.done.recv().map_err(|_| GzipError::WorkerLost)?;
        self.waiting.insert(done.index, done);
        while let Some(done) = self.waiting.remove(&self.next_write) {
            let bytes = done.result?;
            self.out
                .write_all(&bytes)
                .map_err(|source| GzipError::Write { source })?;
            self.blocks.push(BlockRecord {
                key: done.key,
                offset: self.compressed,
                len: bytes.len() as u64,
                digest: done.digest,
            });
            self.reused += usize::from(done.reused);
            self.compressed += bytes.len() as u64;
            self.crc.combine(&done.crc);
            self.next_write += 1;
        }
        Ok(())
    }

    /// Sends the final block, drains every block and writes the trailer.
    fn finish(&mut self) -> Result<GzipSummary, GzipError> {
        self.dispatch(true)?;
        self.jobs = None;
        while self.next_write < self.next_index {
            self.receive_one()?;
        }
        // RFC 1952: CRC-32, then ISIZE (input length modulo 2^32), little-endian.
        let mut trailer = [0u8; 8];
        trailer[..4].copy_from_slice(&self.crc.sum().to_le_bytes());
        trailer[4..].copy_from_slice(&(self.uncompressed as u32).to_le_bytes());
        self.out
            .write_all(&trailer)
            .and_then(|()| self.out.flush())
            .map_err(|source| GzipError::Write { source })?;
        self.compressed += trailer.len() as u64;
        Ok(GzipSummary {
            uncompressed: self.uncompressed,
            compressed: self.compressed,
            crc: self.crc.sum(),
            blocks: std::mem::take(&mut self.blocks),
            reused: self.reused,
            refused: 0,
        })
    }
}

impl<W: Write> GzipSink<'_, W> {
    /// How many bytes of `buf` belong to the current block, and whether
    /// the block ends after them.
    fn cut(&mut self, buf: &[u8]) -> (usize, bool) {
        let len = self.block.len();
        if len < MIN_BLOCK {
            // No cut can fall here: copy without hashing.
            return (buf.len().min(MIN_BLOCK - len), false);
        }
        let room = MAX_BLOCK - len;
        for (i, &byte) in buf.iter().take(room).enumerate() {
            self.hash = (self.hash << 1).wrapping_add(GEAR[usize::from(byte)]);
            if self.hash & CUT_MASK == 0 {
                return (i + 1, true);
            }
        }
        if buf.len() >= room {
            (room, true)
        } else {
            (buf.len(), false)
        }
    }
}

impl<W: Write> Write for GzipSink<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.check()?;
        let (n, cut) = self.cut(buf);
        self.block.extend_from_slice(&buf[..n]);
        self.uncompressed += n as u64;
        if cut && let Err(error) = self.dispatch(false) {
            return Err(self.fail(error));
        }
        Ok(n)
    }

    /// Blocks are cut where the content says, never at flushes: a flush
    /// that cut a block would make the output depend on how the producer
    /// wrote.
    fn flush(&mut self) -> io::Result<()> {
        self.check()
    }
}

/// Runs `produce` with a sink whose bytes are gzip-compressed into `out`,
/// and returns what `produce` returned with a summary of the stream.
///
/// A failure writing `out` is reported as that failure (converted with
/// `From<GzipError>`), even though `produce` only saw a generic write error.
pub fn compress<W, T, E>(
    out: &mut W,
    options: &GzipOptions,
    produce: impl FnOnce(&mut GzipSink<'_, W>) -> Result<T, E>,
) -> Result<(T, GzipSummary), E>
where
    W: Write,
    E: From<GzipError>,
{
    compress_with(out, options, None, produce)
}

/// [`compress`], copying the blocks `memo` already holds instead of
/// deflating them again (the output is the same).
pub fn compress_with<W, T, E>(
    out: &mut W,
    options: &GzipOptions,
    memo: Option<&Memo>,
    produce: impl FnOnce(&mut GzipSink<'_, W>) -> Result<T, E>,
) -> Result<(T, GzipSummary), E>
where
    W: Write,
    E: From<GzipError>,
{
    if options.level > 9 {
        return Err(GzipError::Level {
            level: options.level,
        }
        .into());
    }
    out.write_all(&HEADER)
        .map_err(|source| GzipError::Write { source })?;
    let refused_before = memo.map_or(0, Memo::refused);
    let level = options.level;
    let threads = options.threads.get();

    // The workers borrow the job receiver, so it lives outside the scope.
    let (job_tx, job_rx) = mpsc::sync_channel::<Job>(threads);
    let job_rx = Mutex::new(job_rx);
    thread::scope(|scope| {
        let (done_tx, done_rx) = mpsc::channel::<Done>();
        for _ in 0..threads {
            let job_rx = &job_rx;
            let done_tx = done_tx.clone();
            scope.spawn(move || worker(job_rx, done_tx, level, memo));
        }
        drop(done_tx);

        let mut sink = GzipSink {
            jobs: Some(job_tx),
            done: done_rx,
            out,
            block: Vec::with_capacity(BLOCK_SIZE),
            dict: Vec::new(),
            next_index: 0,
            next_write: 0,
            waiting: BTreeMap::new(),
            max_in_flight: (BLOCKS_PER_THREAD * threads) as u64,
            crc: Crc::new(),
            uncompressed: 0,
            compressed: HEADER.len() as u64,
            hash: 0,
            blocks: Vec::new(),
            reused: 0,
            error: None,
        };
        let produced = produce(&mut sink);
        if let Some(error) = sink.error.take() {
            return Err(error.into());
        }
        let value = produced?;
        let mut summary = sink.finish()?;
        // Every block is back, so every memo read is done.
        summary.refused = memo.map_or(0, Memo::refused) - refused_before;
        Ok((value, summary))
        // Leaving the scope drops the job sender, so the workers exit and
        // are joined here, on success and on error alike.
    })
}

/// Compresses everything `input` yields into `out`.
pub fn compress_reader<W: Write>(
    input: &mut impl Read,
    out: &mut W,
    options: &GzipOptions,
) -> Result<GzipSummary, GzipError> {
    let ((), summary) = compress(out, options, |sink| {
        io::copy(input, sink).map_err(|source| GzipError::Read { source })?;
        Ok::<(), GzipError>(())
    })?;
    Ok(summary)
}

fn worker(
    jobs: &Mutex<mpsc::Receiver<Job>>,
    done: mpsc::Sender<Done>,
    level: u32,
    memo: Option<&Memo>,
) {
    loop {
        // The lock is held only while waiting for the next job; a poisoned
        // lock means another worker panicked, and the scope reports that.
        let job = match jobs.lock() {
            Ok(receiver) => receiver.recv(),
            Err(_) => return,
        };
        let Ok(job) = job else { return };
        let mut crc = Crc::new();
        crc.update(&job.data);
        let key = block_key(level, job.last, &job.dict, &job.data);
        if let Some(bytes) = memo.and_then(|m| m.get(&key)) {
            let reply = Done {
                index: job.index,
                digest: block_digest(&bytes),
                result: Ok(bytes),
                crc,
                key,
                reused: true,
            };
            if done.send(reply).is_err() {
                return;
            }
            continue;
        }
        // A panic must come back as a result: the writer waits for every
        // block in order and would otherwise wait forever for this one.
        let block = job.index;
        let result = match panic::catch_unwind(AssertUnwindSafe(|| {
            deflate_block(Compression::new(level), &job.dict, &job.data, job.last)
        })) {
            Ok(Ok(bytes)) => Ok(bytes),
            Ok(Err(source)) => Err(GzipError::Deflate { block, source }),
            Err(_) => Err(GzipError::Panicked { block }),
        };
        let reply = Done {
            index: job.index,
            digest: result.as_ref().map_or([0; 32], |bytes| block_digest(bytes)),
            result,
            crc,
            key,
            reused: false,
        };
        if done.send(reply).is_err() {
            return;
        }
    }
}

/// The key of a block: everything its compressed bytes depend on.
fn block_key(level: u32, last: bool, dict: &[u8], data: &[u8]) -> [u8; 32] {
    use sha2::Digest as _;
    let mut h = sha2::Sha256::new();
    h.update(FORMAT.as_bytes());
    h.update([level as u8, u8::from(last)]);
    h.update((dict.len() as u64).to_le_bytes());
    h.update(dict);
    h.update(data);
    h.finalize().into()
}

/// Deflates one block with a new raw deflate stream: dictionary, data, then
/// a sync flush (or the end of the stream for the last block).
///
/// A new stream per block, not a reset one: zlib-rs (0.6) zeroes the window
/// and hash chains only when a stream is created, and matches near the end
/// of the input compare bytes past it, so a reset stream's output depends
/// on the block it compressed before, that is, on the thread schedule (the
/// thread-count test caught it). Zeroing costs ~256 KiB of memset per
/// 128 KiB block, about 1% of the time spent deflating it.
fn deflate_block(
    level: Compression,
    dict: &[u8],
    data: &[u8],
    last: bool,
) -> Result<Vec<u8>, flate2::CompressError> {
    let mut deflate = Compress::new(level, false);
    if !dict.is_empty() {
        deflate.set_dictionary(dict)?;
    }
    let flush = if last {
        FlushCompress::Finish
    } else {
        FlushCompress::Sync
    };
    let mut out = Vec::with_capacity(data.len() + data.len() / 16 + 64);
    let start = deflate.total_in();
    loop {
        if out.len() == out.capacity() {
            out.reserve(16 * 1024);
        }
        let consumed = (deflate.total_in() - start) as usize;
        let status = deflate.compress_vec(&data[consumed..], &mut out, flush)?;
        let all_in = (deflate.total_in() - start) as usize == data.len();
        // zlib's contract: a flush is complete once a call leaves output
        // space unused; the end of the stream is reported as StreamEnd.
        let finished = if last {
            status == Status::StreamEnd
        } else {
            all_in && out.len() < out.capacity()
        };
        if finished {
            return Ok(out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::read::GzDecoder;
    use std::collections::HashSet;

    /// Deterministic mixed input: compressible text and random-looking bytes.
    pub(crate) fn mixed_input(len: usize, seed: u64) -> Vec<u8> {
        let mut state = seed | 1;
        let mut out = Vec::with_capacity(len);
        while out.len() < len {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            if (state >> 60) & 1 == 0 {
                let line = format!("line {} of some text, value={}\n", out.len(), state % 1000);
                out.extend_from_slice(line.as_bytes());
            } else {
                out.extend_from_slice(&state.to_le_bytes());
            }
        }
        out.truncate(len);
        out
    }

    fn gzip(data: &[u8], threads: usize) -> (Vec<u8>, GzipSummary) {
        let options = GzipOptions {
            level: DEFAULT_LEVEL,
            threads: NonZeroUsize::new(threads).unwrap(),
        };
        let mut out = Vec::new();
        let summary = compress_reader(&mut &data[..], &mut out, &options).unwrap();
        (out, summary)
    }

    fn gunzip(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        GzDecoder::new(data).read_to_end(&mut out).unwrap();
        out
    }

    #[test]
    fn output_is_identical_for_1_2_and_4_threads() {
        // Sizes around block boundaries: empty, one byte, exactly one
        // block, one block plus a byte, several blocks.
        for len in [0, 1, BLOCK_SIZE, BLOCK_SIZE + 1, 5 * BLOCK_SIZE + 777] {
            let input = mixed_input(len, 7);
            let (one, summary) = gzip(&input, 1);
            assert!(gzip(&input, 2).0 == one, "2 threads differ, len {len}");
            assert!(gzip(&input, 4).0 == one, "4 threads differ, len {len}");
            assert!(gunzip(&one) == input, "round trip fails, len {len}");
            assert_eq!(summary.uncompressed, len as u64);
            assert_eq!(summary.compressed, one.len() as u64);
            let mut crc = Crc::new();
            crc.update(&input);
            assert_eq!(summary.crc, crc.sum());
        }
    }

    #[test]
    fn blocks_are_cut_by_content_and_resynchronise_after_an_edit() {
        let input = mixed_input(40 * BLOCK_SIZE, 5);
        let (_, before) = gzip(&input, 2);
        for pair in before.blocks.windows(2) {
            assert_eq!(pair[0].offset + pair[0].len, pair[1].offset);
        }
        // Insert a few bytes in the middle: only the blocks around the
        // edit change, the cuts after it fall on the same bytes.
        let mut edited = input.clone();
        edited.splice(20 * BLOCK_SIZE..20 * BLOCK_SIZE, *b"an edit");
        let (_, after) = gzip(&edited, 2);
        let old: HashSet<[u8; 32]> = before.blocks.iter().map(|b| b.key).collect();
        let changed = after
            .blocks
            .iter()
            .filter(|b| !old.contains(&b.key))
            .count();
        assert!(before.blocks.len() > 20, "{}", before.blocks.len());
        assert!(
            changed <= 3,
            "{changed} of {} blocks changed",
            after.blocks.len()
        );
    }

    #[test]
    fn a_memo_gives_the_same_bytes_and_skips_the_unchanged_blocks() {
        let input = mixed_input(30 * BLOCK_SIZE, 9);
        let (first, summary) = gzip(&input, 2);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("first.gz");
        std::fs::write(&path, &first).unwrap();
        let memo = Memo::new(std::fs::File::open(&path).unwrap(), &summary.blocks).unwrap();
        let mut edited = input.clone();
        edited[15 * BLOCK_SIZE] ^= 0xff;
        let options = GzipOptions::default();
        let mut with_memo = Vec::new();
        let ((), reused) = compress_with(&mut with_memo, &options, Some(&memo), |sink| {
            sink.write_all(&edited)
                .map_err(|source| GzipError::Read { source })
        })
        .unwrap();
        let (fresh, _) = gzip(&edited, 1);
        assert!(with_memo == fresh, "a memo changed the output");
        assert!(reused.reused + 3 >= reused.blocks.len(), "{reused:?}");
        assert!(reused.reused < reused.blocks.len());
        // The same input again: every block comes from the memo.
        let mut again = Vec::new();
        let ((), all) = compress_with(&mut again, &options, Some(&memo), |sink| {
            sink.write_all(&input)
                .map_err(|source| GzipError::Read { source })
        })
        .unwrap();
        assert!(again == first);
        assert_eq!(all.reused, all.blocks.len());
    }

    #[test]
    fn a_damaged_block_is_compressed_again_never_copied() {
        let input = mixed_input(12 * BLOCK_SIZE, 5);
        let (good, summary) = gzip(&input, 2);
        // A few bytes flipped inside the sixth block, as on a bad disk.
        let mut damaged = good.clone();
        let hit = summary.blocks[5];
        for i in 0..4 {
            damaged[(hit.offset + hit.len / 2) as usize + i] ^= 0x5a;
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("damaged.gz");
        std::fs::write(&path, &damaged).unwrap();
        let memo = Memo::new(std::fs::File::open(&path).unwrap(), &summary.blocks).unwrap();
        let mut again = Vec::new();
        let ((), healed) =
            compress_with(&mut again, &GzipOptions::default(), Some(&memo), |sink| {
                sink.write_all(&input)
                    .map_err(|source| GzipError::Read { source })
            })
            .unwrap();
        assert!(again == good, "the damaged block reached the output");
        assert_eq!(healed.refused, 1);
        assert_eq!(healed.reused, summary.blocks.len() - 1);
        // An index whose digests lie is refused as well.
        let mut lying = summary.blocks.clone();
        lying[0].digest[0] ^= 1;
        let memo = Memo::new(std::fs::File::open(&path).unwrap(), &lying).unwrap();
        let mut third = Vec::new();
        let ((), checked) =
            compress_with(&mut third, &GzipOptions::default(), Some(&memo), |sink| {
                sink.write_all(&input)
                    .map_err(|source| GzipError::Read { source })
            })
            .unwrap();
        assert!(third == good);
        assert_eq!(checked.refused, 2);
    }

    #[test]
    fn a_memo_with_records_beyond_its_file_is_ignored_there() {
        let input = mixed_input(4 * BLOCK_SIZE, 2);
        let (out, summary) = gzip(&input, 1);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("short.gz");
        std::fs::write(&path, &out[..out.len() / 2]).unwrap();
        let memo = Memo::new(std::fs::File::open(&path).unwrap(), &summary.blocks).unwrap();
        let mut again = Vec::new();
        compress_with(&mut again, &GzipOptions::default(), Some(&memo), |sink| {
            sink.write_all(&input)
                .map_err(|source| GzipError::Read { source })
        })
        .unwrap();
        assert!(again == out);
    }

    #[test]
    fn block_indexes_round_trip() {
        let (_, summary) = gzip(&mixed_input(5 * BLOCK_SIZE, 4), 2);
        let encoded = encode_index(&summary.blocks);
        assert_eq!(decode_index(&encoded).unwrap(), summary.blocks);
        assert!(decode_index(&encoded[1..]).is_none());
        assert!(decode_index(&encoded[..encoded.len() - 1]).is_none());
    }

    #[test]
    fn header_and_trailer_follow_rfc_1952() {
        let (out, _) = gzip(b"hello", 2);
        assert_eq!(&out[..10], &HEADER);
        let n = out.len();
        assert_eq!(&out[n - 4..], &5u32.to_le_bytes());
        // CRC-32 of "hello".
        assert_eq!(&out[n - 8..n - 4], &0x3610_a686u32.to_le_bytes());
    }

    #[test]
    fn dictionary_keeps_the_ratio_close_to_one_stream() {
        // Text repeating every 10 KiB compresses to almost nothing when each
        // block can see the previous one; independent blocks would pay for
        // the first 10 KiB of every block again.
        let unit = mixed_input(10 * 1024, 3);
        let input: Vec<u8> = unit.iter().copied().cycle().take(40 * BLOCK_SIZE).collect();
        let (out, _) = gzip(&input, 2);
        let mut single = flate2::write::GzEncoder::new(Vec::new(), Compression::new(6));
        single.write_all(&input).unwrap();
        let single = single.finish().unwrap();
        assert!(
            out.len() < single.len() + 40 * 64,
            "{} vs {}",
            out.len(),
            single.len()
        );
        assert_eq!(gunzip(&out), input);
    }

    #[test]
    fn system_gzip_accepts_the_output() {
        let input = mixed_input(3 * BLOCK_SIZE + 5, 11);
        let (out, _) = gzip(&input, 2);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.gz");
        std::fs::write(&path, &out).unwrap();
        let result = std::process::Command::new("gzip")
            .arg("-dc")
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            result.status.success(),
            "{}",
            String::from_utf8_lossy(&result.stderr)
        );
        assert!(result.stdout == input);
    }

    #[test]
    fn a_failing_output_is_reported_as_such() {
        struct Broken;
        impl Write for Broken {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::Error::other("disk full"))
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let input = mixed_input(BLOCK_SIZE * 20, 1);
        let err =
            compress_reader(&mut &input[..], &mut Broken, &GzipOptions::default()).unwrap_err();
        assert!(matches!(err, GzipError::Write { .. }), "{err:?}");
    }

    #[test]
    fn out_of_range_level_is_rejected() {
        let options = GzipOptions {
            level: 10,
            ..GzipOptions::default()
        };
        let err = compress_reader(&mut &b""[..], &mut Vec::new(), &options).unwrap_err();
        assert_eq!(
            err.to_string(),
            "compression level 10 is out of range; use 0 to 9"
        );
    }
}
