//! The decompression side of the pipeline: sniff the compression, inflate,
//! and hand 1 MiB chunks over bounded channels to a hashing thread (the
//! uncompressed stream's digest, to EOF) and on to the writer thread.

use std::cell::Cell;
use std::io::{self, BufReader, Read};
use std::rc::Rc;
use std::sync::mpsc::{Receiver, Sender, SyncSender, TryRecvError};

use sha2::{Digest, Sha256};

use super::igzip::IgzipDecoder;
use super::UnpackError;

pub(super) const CHUNK: usize = 1 << 20;

/// What the writer thread receives.
pub(super) enum Msg {
    Data(Vec<u8>),
    /// The producer failed; the writer must stop with an error, not treat the
    /// truncated stream as a clean end of archive.
    Abort,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Compression {
    Gzip,
    Zstd,
    Plain,
}

/// Classifies the first bytes of a layer blob.
pub(super) fn sniff(magic: &[u8]) -> Result<Compression, UnpackError> {
    match magic {
        [0x1f, 0x8b, ..] => Ok(Compression::Gzip),
        [0x28, 0xb5, 0x2f, 0xfd, ..] => Ok(Compression::Zstd),
        // zstd skippable frame (zstd:chunked may start with one).
        [0x50..=0x5f, 0x2a, 0x4d, 0x18, ..] => Ok(Compression::Zstd),
        [0xfd, b'7', b'z', b'X', b'Z', ..] | [b'B', b'Z', b'h', ..] => {
            Err(UnpackError::UnsupportedCompression {
                magic: hex::encode(magic),
            })
        }
        _ => Ok(Compression::Plain),
    }
}

/// Wraps the raw blob in the right decoder (gzip through ISA-L's igzip).
pub(super) fn decoder<'a>(mut blob: impl Read + 'a) -> Result<Box<dyn Read + 'a>, UnpackError> {
    let mut magic = [0u8; 6];
    let mut len = 0;
    while len < magic.len() {
        match blob.read(&mut magic[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(source) => return Err(UnpackError::ReadLayer { source }),
        }
    }
    let head = magic[..len].to_vec();
    let kind = sniff(&head)?;
    let full = io::Cursor::new(head).chain(blob);
    Ok(match kind {
        // Multi-member: eStargz and pigz output have several gzip members.
        Compression::Gzip => Box::new(IgzipDecoder::new(full)),
        Compression::Zstd => {
            let mut dec =
                zstd::stream::read::Decoder::with_buffer(BufReader::with_capacity(CHUNK, full))
                    .map_err(|source| UnpackError::ReadLayer { source })?;
            // Accept `--long` windows up to 2 GiB instead of failing.
            dec.window_log_max(31)
                .map_err(|source| UnpackError::ReadLayer { source })?;
            Box::new(dec)
        }
        Compression::Plain => Box::new(BufReader::with_capacity(CHUNK, full)),
    })
}

/// Why the pump stopped.
pub(super) enum PumpEnd {
    /// Read to EOF.
    Eof { bytes: u64 },
    /// The writer hung up (it failed); its error is the one to report.
    WriterGone,
}

/// Reads `source` to EOF and feeds the hasher (and through it the writer).
pub(super) fn pump(
    source: &mut dyn Read,
    tx: SyncSender<Msg>,
    recycled: Receiver<Vec<u8>>,
    max_bytes: u64,
) -> Result<PumpEnd, UnpackError> {
    let mut total: u64 = 0;
    loop {
        let mut buf = match recycled.try_recv() {
            Ok(buf) => buf,
            Err(TryRecvError::Empty | TryRecvError::Disconnected) => Vec::with_capacity(CHUNK),
        };
        buf.resize(CHUNK, 0);
        // Fill the whole chunk: a recycled buffer is then already CHUNK
        // long and `resize` zeroes nothing (decoders return short reads).
        let mut n = 0;
        while n < CHUNK {
            match source.read(&mut buf[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(source) => {
                    let _ = tx.send(Msg::Abort);
                    return Err(UnpackError::ReadLayer { source });
                }
            }
        }
        if n == 0 {
            break;
        }
        total += n as u64;
        if total > max_bytes {
            let _ = tx.send(Msg::Abort);
            return Err(UnpackError::TooLarge { limit: max_bytes });
        }
        buf.truncate(n);
        if tx.send(Msg::Data(buf)).is_err() {
            return Ok(PumpEnd::WriterGone);
        }
    }
    Ok(PumpEnd::Eof { bytes: total })
}

/// The hashing stage between the pump and the writer: digests every chunk
/// and passes it on. Returns `sha256:<hex>` of all the data it saw.
pub(super) fn hash_and_forward(rx: Receiver<Msg>, tx: SyncSender<Msg>) -> String {
    let mut hasher = Sha256::new();
    for msg in rx {
        if let Msg::Data(data) = &msg {
            hasher.update(data);
        }
        if tx.send(msg).is_err() {
            // The writer failed; dropping `rx` tells the pump.
            break;
        }
    }
    format!("sha256:{}", hex::encode(hasher.finalize()))
}

/// Most bytes the tar parser may read to find one entry: its headers and
/// their padding. The parser holds PAX records, GNU long names and an
/// old-GNU sparse map's extension blocks in memory; Go's archive/tar allows
/// 1 MiB of records, and 8 MiB fits an old-GNU map of 300 000 extents.
pub(super) const HEADER_BUDGET: u64 = 8 << 20;

/// Counts the bytes read while a budget is set (see [`HEADER_BUDGET`]).
#[derive(Debug, Default)]
pub(super) struct HeaderMeter {
    left: Cell<Option<u64>>,
}

impl HeaderMeter {
    /// Reads fail once more than `budget` bytes were read from now on.
    pub(super) fn limit(&self, budget: u64) {
        self.left.set(Some(budget));
    }

    pub(super) fn lift(&self) {
        self.left.set(None);
    }

    fn charge(&self, n: usize) -> io::Result<()> {
        let Some(left) = self.left.get() else {
            return Ok(());
        };
        match left.checked_sub(n as u64) {
            Some(rest) => {
                self.left.set(Some(rest));
                Ok(())
            }
            None => Err(io::Error::other(format!(
                "the headers of this entry (long names, PAX records, an old-GNU sparse map) \
                 take more than {HEADER_BUDGET} bytes"
            ))),
        }
    }
}

/// The writer side: a `Read` over the chunks, returning spent buffers.
pub(super) struct ChannelReader {
    rx: Receiver<Msg>,
    recycle: Sender<Vec<u8>>,
    chunk: Vec<u8>,
    pos: usize,
    meter: Rc<HeaderMeter>,
}

impl ChannelReader {
    pub(super) fn new(rx: Receiver<Msg>, recycle: Sender<Vec<u8>>) -> Self {
        ChannelReader {
            rx,
            recycle,
            chunk: Vec::new(),
            pos: 0,
            meter: Rc::default(),
        }
    }

    /// The meter of this reader's bytes, shared with the caller.
    pub(super) fn meter(&self) -> Rc<HeaderMeter> {
        Rc::clone(&self.meter)
    }

    /// Consumes what is left of the stream; returns how many of those bytes
    /// were not zero (tar padding after the end-of-archive marker is zeros).
    pub(super) fn drain_count_nonzero(&mut self) -> io::Result<u64> {
        let mut nonzero = 0;
        loop {
            if self.pos < self.chunk.len() {
                nonzero += self.chunk[self.pos..].iter().filter(|b| **b != 0).count() as u64;
                self.pos = self.chunk.len();
            }
            if !self.next_chunk()? {
                return Ok(nonzero);
            }
        }
    }

    fn next_chunk(&mut self) -> io::Result<bool> {
        match self.rx.recv() {
            Ok(Msg::Data(data)) => {
                let spent = std::mem::replace(&mut self.chunk, data);
                self.pos = 0;
                if spent.capacity() >= CHUNK {
                    let _ = self.recycle.send(spent);
                }
                Ok(true)
            }
            Ok(Msg::Abort) => Err(io::Error::other("layer stream aborted by the reader")),
            Err(_) => Ok(false),
        }
    }
}

impl Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos >= self.chunk.len() {
            if !self.next_chunk()? {
                return Ok(0);
            }
        }
        let n = out.len().min(self.chunk.len() - self.pos);
        self.meter.charge(n)?;
        out[..n].copy_from_slice(&self.chunk[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}
