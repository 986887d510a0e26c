//! A byte stream handed between threads in chunks, to one reader or to
//! several at once: each chunk is shared, never copied per reader, and
//! the buffers come back to the writer once every reader is done with
//! them. Unlike a pipe, the stream says how it ended: a reader gets end
//! of file only when the writer called [`ChunkWriter::finish`], and an
//! error when the writer was dropped first (its source failed), so
//! whatever reads to the end reads the whole stream or fails.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

/// Bytes per chunk the writer fills.
pub const CHUNK_SIZE: usize = 1 << 20;
/// Chunks in flight to each reader.
const QUEUED: usize = 4;

enum Message {
    Data(Arc<Vec<u8>>),
    End,
}

/// The writing end: [`ChunkWriter::send`] shares a filled buffer with
/// every reader; [`Write`] copies bytes into buffers of its own.
pub struct ChunkWriter {
    readers: Vec<SyncSender<Message>>,
    /// Buffers sent, oldest first, to reuse once the readers dropped them.
    sent: VecDeque<Arc<Vec<u8>>>,
    /// What [`Write`] gathers before sending it.
    filling: Vec<u8>,
}

/// A reading end.
pub struct ChunkReader {
    messages: Receiver<Message>,
    chunk: Arc<Vec<u8>>,
    at: usize,
    ended: bool,
}

/// A stream with `readers` reading ends.
pub fn channel(readers: usize) -> (ChunkWriter, Vec<ChunkReader>) {
    let (senders, receivers): (Vec<_>, Vec<_>) = (0..readers).map(|_| sync_channel(QUEUED)).unzip();
    let writer = ChunkWriter {
        readers: senders,
        sent: VecDeque::new(),
        filling: Vec::new(),
    };
    let readers = receivers
        .into_iter()
        .map(|messages| ChunkReader {
            messages,
            chunk: Arc::new(Vec::new()),
            at: 0,
            ended: false,
        })
        .collect();
    (writer, readers)
}

/// A stream with one reading end.
pub fn one_reader() -> (ChunkWriter, ChunkReader) {
    let (writer, mut readers) = channel(1);
    (writer, readers.pop().expect("one reader"))
}

impl ChunkWriter {
    /// An empty buffer of [`CHUNK_SIZE`] bytes' capacity: the oldest one
    /// sent if every reader is done with it, else a new one.
    pub fn buffer(&mut self) -> Vec<u8> {
        if let Some(oldest) = self.sent.front_mut()
            && Arc::get_mut(oldest).is_some()
        {
            let oldest = self.sent.pop_front().expect("looked at");
            let mut buffer = Arc::try_unwrap(oldest).unwrap_or_default();
            buffer.clear();
            return buffer;
        }
        Vec::with_capacity(CHUNK_SIZE)
    }

    /// Hands `chunk` to every reader, waiting while one has
    /// [`QUEUED`] chunks unread. Fails once any reader is gone.
    pub fn send(&mut self, chunk: Vec<u8>) -> io::Result<()> {
        if chunk.is_empty() {
            return Ok(());
        }
        let chunk = Arc::new(chunk);
        for reader in &self.readers {
            reader
                .send(Message::Data(chunk.clone()))
                .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "a reader stopped"))?;
        }
        // Readers hold at most QUEUED chunks each plus the one they read:
        // older buffers than that are free, or soon will be.
        self.sent.push_back(chunk);
        if self.sent.len() > 2 * QUEUED + 2 {
            self.sent.pop_front();
        }
        Ok(())
    }

    /// Ends the stream: readers get end of file after the last chunk.
    pub fn finish(mut self) -> io::Result<()> {
        self.flush()?;
        for reader in &self.readers {
            // A reader gone already has what it wanted.
            let _ = reader.send(Message::End);
        }
        Ok(())
    }
}

impl Write for ChunkWriter {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        if self.filling.capacity() == 0 {
            self.filling = self.buffer();
        }
        let n = bytes.len().min(CHUNK_SIZE - self.filling.len());
        self.filling.extend_from_slice(&bytes[..n]);
        if self.filling.len() == CHUNK_SIZE {
            self.flush()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        let filled = std::mem::take(&mut self.filling);
        self.send(filled)
    }
}

impl Read for ChunkReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.at == self.chunk.len() && !self.ended && !out.is_empty() {
            match self.messages.recv() {
                Ok(Message::Data(chunk)) => {
                    self.chunk = chunk;
                    self.at = 0;
                }
                Ok(Message::End) => self.ended = true,
                Err(_) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the stream was cut before its end",
                    ));
                }
            }
        }
        let n = out.len().min(self.chunk.len() - self.at);
        out[..n].copy_from_slice(&self.chunk[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 % 251) as u8).collect()
    }

    #[test]
    fn every_reader_gets_every_byte_then_the_end() {
        let data = pattern(3 * CHUNK_SIZE + 12_345);
        let (mut writer, readers) = channel(2);
        std::thread::scope(|scope| {
            let reads: Vec<_> = readers
                .into_iter()
                .map(|mut reader| {
                    scope.spawn(move || {
                        let mut got = Vec::new();
                        reader.read_to_end(&mut got).map(|_| got)
                    })
                })
                .collect();
            for piece in data.chunks(100_000) {
                writer.write_all(piece).unwrap();
            }
            writer.finish().unwrap();
            for read in reads {
                assert!(read.join().unwrap().unwrap() == data);
            }
        });
    }

    #[test]
    fn a_writer_dropped_before_the_end_is_an_error_not_an_end() {
        let (mut writer, mut reader) = one_reader();
        std::thread::scope(|scope| {
            let read = scope.spawn(move || {
                let mut got = Vec::new();
                let result = reader.read_to_end(&mut got);
                (result, got.len())
            });
            writer.write_all(&pattern(1000)).unwrap();
            writer.flush().unwrap();
            drop(writer);
            let (result, len) = read.join().unwrap();
            assert_eq!(len, 1000);
            assert_eq!(result.unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
        });
    }

    #[test]
    fn buffers_come_back_once_the_readers_are_done() {
        let (mut writer, mut reader) = one_reader();
        let mut first = writer.buffer();
        let address = first.as_ptr();
        first.push(1);
        writer.send(first).unwrap();
        let mut byte = [0u8; 1];
        reader.read_exact(&mut byte).unwrap();
        // The reader still holds the first chunk: a new buffer it is.
        let held = writer.buffer();
        assert_ne!(held.as_ptr(), address);
        writer.send(vec![2]).unwrap();
        reader.read_exact(&mut byte).unwrap();
        assert_eq!(byte, [2]);
        // It moved on to the second: the first comes back, empty.
        let again = writer.buffer();
        assert_eq!((again.as_ptr(), again.len()), (address, 0));
        assert!(again.capacity() >= CHUNK_SIZE);
    }

    #[test]
    fn a_reader_gone_fails_the_writer() {
        let (mut writer, readers) = channel(2);
        drop(readers);
        assert_eq!(
            writer.send(vec![1]).unwrap_err().kind(),
            io::ErrorKind::BrokenPipe
        );
    }
}
