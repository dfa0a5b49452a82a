//! Gzip inflate through ISA-L's igzip: its SIMD Huffman decoder and CRC-32
//! inflate a layer with about two thirds of zlib-rs's CPU time, and inflate
//! is the longest stage of the unpack pipeline. A streaming `Read` over one
//! or more gzip members (pigz and eStargz write several); each member's
//! header is parsed and its CRC-32 checked by igzip itself.

use std::io::{self, Read};

use isal_sys::igzip_lib as isal;

/// Compressed bytes read from the blob at a time.
const INPUT: usize = 256 << 10;

pub(super) struct IgzipDecoder<R> {
    inner: R,
    state: Box<isal::inflate_state>,
    input: Vec<u8>,
    /// Unconsumed input is `input[start..end]`.
    start: usize,
    end: usize,
    /// `inner` returned end of file.
    eof: bool,
}

impl<R: Read> IgzipDecoder<R> {
    pub(super) fn new(inner: R) -> Self {
        // SAFETY: inflate_state is plain C data (integers, pointers, arrays)
        // for which all-zero is a valid value; isal_inflate_init then sets
        // every field that matters before use.
        let mut state: Box<isal::inflate_state> = Box::new(unsafe { std::mem::zeroed() });
        // SAFETY: `state` is a valid, exclusively borrowed inflate_state.
        unsafe { isal::isal_inflate_init(&mut *state) };
        state.crc_flag = isal::ISAL_GZIP;
        IgzipDecoder {
            inner,
            state,
            input: vec![0; INPUT],
            start: 0,
            end: 0,
            eof: false,
        }
    }

    /// Reads more compressed input after what is left unconsumed.
    fn refill(&mut self) -> io::Result<()> {
        if self.start > 0 {
            self.input.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.input.len() {
            return Err(corrupt("the inflater stalled on a full input buffer"));
        }
        loop {
            match self.inner.read(&mut self.input[self.end..]) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(());
                }
                Ok(n) => {
                    self.end += n;
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    fn member_done(&self) -> bool {
        self.state.block_state == isal::isal_block_state_ISAL_BLOCK_FINISH
    }
}

fn corrupt(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("corrupt gzip stream: {what}"),
    )
}

impl<R: Read> Read for IgzipDecoder<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        loop {
            if self.start == self.end && !self.eof {
                self.refill()?;
            }
            if self.member_done() {
                if self.start == self.end {
                    if self.eof {
                        return Ok(0);
                    }
                    continue;
                }
                // Another member follows: it must have its own gzip header.
                // SAFETY: valid state; reset keeps crc_flag (gzip wrapper).
                unsafe { isal::isal_inflate_reset(&mut *self.state) };
            }
            let avail = self.end - self.start;
            // INPUT and the caller's buffer are far below u32::MAX; a larger
            // output buffer is simply filled in part.
            let out_len = out.len().min(u32::MAX as usize);
            self.state.next_in = self.input[self.start..].as_mut_ptr();
            self.state.avail_in = avail as u32;
            self.state.next_out = out.as_mut_ptr();
            self.state.avail_out = out_len as u32;
            // SAFETY: next_in/avail_in describe initialised bytes of
            // `self.input` and next_out/avail_out writable bytes of `out`;
            // both outlive the call and the pointers are not kept past it
            // (they are reset before every call).
            let ret = unsafe { isal::isal_inflate(&mut *self.state) };
            let consumed = avail - self.state.avail_in as usize;
            let produced = out_len - self.state.avail_out as usize;
            self.start += consumed;
            self.state.next_in = std::ptr::null_mut();
            self.state.next_out = std::ptr::null_mut();
            if ret != isal::ISAL_DECOMP_OK as i32 {
                return Err(corrupt(match ret {
                    isal::ISAL_INCORRECT_CHECKSUM => "CRC-32 mismatch",
                    isal::ISAL_INVALID_WRAPPER => "bad gzip header",
                    isal::ISAL_UNSUPPORTED_METHOD => "unsupported compression method",
                    isal::ISAL_INVALID_LOOKBACK => "back-reference before the start",
                    isal::ISAL_INVALID_SYMBOL => "invalid Huffman symbol",
                    _ => "invalid deflate block",
                }));
            }
            if produced > 0 {
                return Ok(produced);
            }
            if self.member_done() {
                continue;
            }
            if self.eof && self.start == self.end {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "gzip stream ends in the middle of a member",
                ));
            }
            if consumed == 0 {
                // Not enough input for the next step: read more behind it.
                if self.eof {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "gzip stream ends in the middle of a member",
                    ));
                }
                self.refill()?;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

    fn inflate(blob: &[u8], read_size: usize) -> io::Result<Vec<u8>> {
        // A reader that returns at most 7 bytes at a time stresses refills.
        struct Trickle<'a>(&'a [u8]);
        impl Read for Trickle<'_> {
            fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
                let n = out.len().min(self.0.len()).min(7);
                out[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let mut dec = IgzipDecoder::new(Trickle(blob));
        let mut got = Vec::new();
        let mut buf = vec![0; read_size];
        loop {
            let n = dec.read(&mut buf)?;
            if n == 0 {
                return Ok(got);
            }
            got.extend_from_slice(&buf[..n]);
        }
    }

    fn sample() -> Vec<u8> {
        (0..300_000u32)
            .flat_map(|i| format!("line {i} {}\n", i % 97).into_bytes())
            .collect()
    }

    #[test]
    fn inflates_one_and_several_members() {
        let data = sample();
        let one = gzip(&data);
        assert_eq!(inflate(&one, 1 << 20).unwrap(), data);
        assert_eq!(inflate(&one, 5).unwrap(), data);
        let mut multi = gzip(&data[..1000]);
        multi.extend(gzip(b""));
        multi.extend(gzip(&data[1000..]));
        assert_eq!(inflate(&multi, 4096).unwrap(), data);
    }

    #[test]
    fn refuses_truncation_bad_crc_and_trailing_garbage() {
        let data = sample();
        let blob = gzip(&data);
        let cut = inflate(&blob[..blob.len() / 2], 4096).unwrap_err();
        assert_eq!(cut.kind(), io::ErrorKind::UnexpectedEof);
        let no_trailer = inflate(&blob[..blob.len() - 4], 4096).unwrap_err();
        assert_eq!(no_trailer.kind(), io::ErrorKind::UnexpectedEof);
        let mut bad_crc = blob.clone();
        let at = bad_crc.len() - 8;
        bad_crc[at] ^= 0xff;
        assert_eq!(
            inflate(&bad_crc, 4096).unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
        let mut garbage = blob.clone();
        garbage.extend_from_slice(b"this is not the header of a gzip member");
        assert_eq!(
            inflate(&garbage, 4096).unwrap_err().kind(),
            io::ErrorKind::InvalidData
        );
        // Shorter than a gzip header: a truncated member.
        let mut short = blob;
        short.extend_from_slice(b"junk");
        assert_eq!(
            inflate(&short, 4096).unwrap_err().kind(),
            io::ErrorKind::UnexpectedEof
        );
    }
}
