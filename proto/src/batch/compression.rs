//! Kafka's batch compression codecs. In a compressed batch the bytes after
//! the fixed header are the compressed concatenation of the records, in the
//! formats Kafka clients write:
//!
//! - gzip: a gzip stream (several members are accepted).
//! - snappy: raw snappy (librdkafka, franz-go) or the xerial framing of the
//!   Java client (`\x82SNAPPY\0`, two i32 versions, then `[u32 length][raw
//!   snappy block]` chunks), told apart by the magic. Written raw.
//! - lz4: the standard LZ4 frame format, independent 64 KiB blocks.
//! - zstd: zstd frames (level 3 when written).
//!
//! Decompression is bounded: [`decompress`] never produces, nor allocates
//! room for, more than `max_out` bytes, whatever sizes the input claims.

use std::io::{self, Read, Write};

use super::BatchError;

/// Largest decompressed records section the batch validators and readers
/// accept (the same bound as a whole batch, [`super::MAX_BATCH_LEN`]).
pub const MAX_DECOMPRESSED: usize = super::MAX_BATCH_LEN;

/// zstd level of written batches (Kafka's default).
const ZSTD_LEVEL: i32 = 3;
/// Largest zstd window accepted (zstd's own default limit, 128 MiB).
const ZSTD_WINDOW_LOG_MAX: u32 = 27;
/// Smallest window log zstd knows.
const ZSTD_WINDOW_LOG_MIN: u32 = 10;
/// Magic of the xerial snappy framing (Java client).
const XERIAL_MAGIC: &[u8; 8] = b"\x82SNAPPY\x00";
/// Magic plus the version and compatible-version i32s.
const XERIAL_HEADER_LEN: usize = 16;
/// No snappy block expands more than this: its densest element, a copy
/// with a 2-byte offset, is 3 bytes for at most 64.
const SNAPPY_MAX_RATIO: usize = 22;
/// Bytes decoders are read in while the output grows.
const READ_CHUNK: usize = 64 * 1024;

/// A batch compression codec: bits 0-2 of the batch attributes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Codec {
    #[default]
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

impl Codec {
    /// The codec id in the batch attributes.
    pub fn id(self) -> u8 {
        match self {
            Codec::None => 0,
            Codec::Gzip => 1,
            Codec::Snappy => 2,
            Codec::Lz4 => 3,
            Codec::Zstd => 4,
        }
    }

    /// Lower-case name, as Kafka spells it (`compression.type`).
    pub fn name(self) -> &'static str {
        match self {
            Codec::None => "none",
            Codec::Gzip => "gzip",
            Codec::Snappy => "snappy",
            Codec::Lz4 => "lz4",
            Codec::Zstd => "zstd",
        }
    }

    /// Every codec, `None` first.
    pub const ALL: [Codec; 5] = [
        Codec::None,
        Codec::Gzip,
        Codec::Snappy,
        Codec::Lz4,
        Codec::Zstd,
    ];
}

impl std::fmt::Display for Codec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl TryFrom<u8> for Codec {
    type Error = BatchError;
    fn try_from(id: u8) -> Result<Self, BatchError> {
        match id {
            0 => Ok(Codec::None),
            1 => Ok(Codec::Gzip),
            2 => Ok(Codec::Snappy),
            3 => Ok(Codec::Lz4),
            4 => Ok(Codec::Zstd),
            other => Err(BatchError::UnsupportedCompression(other)),
        }
    }
}

/// Compresses `input` with `codec` (`None` copies it).
///
/// # Panics
///
/// Only when the codec cannot work at all: snappy input of 4 GiB or more
/// (far beyond any batch), or zstd failing to allocate its context.
/// [`super::BatchBuilder`] never panics here: it stores such a batch
/// uncompressed instead.
pub fn compress(codec: Codec, input: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    if let Err(e) = compress_into(codec, input, &mut out) {
        panic!("{codec} compression of {} bytes failed: {e}", input.len());
    }
    out
}

/// Appends the compressed `input` to `out`. On error `out` may hold a
/// partial result past its original length.
pub(super) fn compress_into(codec: Codec, input: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
    match codec {
        Codec::None => out.extend_from_slice(input),
        Codec::Gzip => {
            let mut enc = flate2::write::GzEncoder::new(out, flate2::Compression::default());
            enc.write_all(input)?;
            enc.finish()?;
        }
        Codec::Snappy => {
            let max = snap::raw::max_compress_len(input.len());
            if max == 0 {
                return Err(io::Error::other("input too large for snappy"));
            }
            let start = out.len();
            out.resize(start + max, 0);
            let n = snap::raw::Encoder::new()
                .compress(input, &mut out[start..])
                .map_err(io::Error::other)?;
            out.truncate(start + n);
        }
        Codec::Lz4 => {
            let info = lz4_flex::frame::FrameInfo::new()
                .block_size(lz4_flex::frame::BlockSize::Max64KB)
                .block_mode(lz4_flex::frame::BlockMode::Independent);
            let mut enc = lz4_flex::frame::FrameEncoder::with_frame_info(info, out);
            enc.write_all(input)?;
            enc.finish().map_err(io::Error::other)?;
        }
        Codec::Zstd => {
            let mut enc = zstd::stream::write::Encoder::new(out, ZSTD_LEVEL)?;
            enc.set_pledged_src_size(Some(input.len() as u64))?;
            enc.write_all(input)?;
            enc.finish()?;
        }
    }
    Ok(())
}

/// Decompresses `input`, refusing to produce more than `max_out` bytes.
///
/// Memory stays within the bound too: the output buffer never grows past
/// `max_out`, a snappy block's claimed length is checked before anything is
/// allocated for it, and a zstd frame may not ask for a window larger than
/// `max_out` (rounded up to a power of two, at most zstd's default limit of
/// 128 MiB); with [`MAX_DECOMPRESSED`] every frame a Kafka client writes
/// fits.
pub fn decompress(codec: Codec, input: &[u8], max_out: usize) -> Result<Vec<u8>, BatchError> {
    match codec {
        Codec::None => {
            if input.len() > max_out {
                return Err(too_large(codec, max_out));
            }
            Ok(input.to_vec())
        }
        Codec::Gzip => read_bounded(codec, flate2::read::MultiGzDecoder::new(input), max_out),
        Codec::Snappy => {
            if input.starts_with(XERIAL_MAGIC) {
                xerial_decompress(input, max_out)
            } else {
                let mut out = Vec::new();
                snappy_block_into(input, max_out, &mut out)?;
                Ok(out)
            }
        }
        Codec::Lz4 => read_bounded(codec, lz4_flex::frame::FrameDecoder::new(input), max_out),
        Codec::Zstd => {
            let mut dec =
                zstd::stream::read::Decoder::with_buffer(input).map_err(|e| failed(codec, &e))?;
            // The window is memory the decoder allocates up front, as the
            // frame header asks: no larger than the output may be.
            let window = max_out
                .checked_next_power_of_two()
                .map_or(usize::BITS, usize::trailing_zeros)
                .clamp(ZSTD_WINDOW_LOG_MIN, ZSTD_WINDOW_LOG_MAX);
            dec.window_log_max(window).map_err(|e| failed(codec, &e))?;
            read_bounded(codec, dec, max_out)
        }
    }
}

fn failed(codec: Codec, e: &dyn std::fmt::Display) -> BatchError {
    BatchError::Decompress {
        codec,
        why: e.to_string(),
    }
}

fn too_large(codec: Codec, max: usize) -> BatchError {
    BatchError::DecompressedTooLarge { codec, max }
}

/// Reads a decoder to its end into a buffer that never grows past
/// `max_out` bytes: more output than that is an error.
fn read_bounded(codec: Codec, mut r: impl Read, max_out: usize) -> Result<Vec<u8>, BatchError> {
    let mut out = Vec::new();
    let mut filled = 0usize;
    loop {
        if filled == out.len() {
            if filled == max_out {
                // At the bound: one more byte means too much.
                let mut probe = [0u8; 1];
                return match read_retrying(&mut r, &mut probe) {
                    Ok(0) => Ok(out),
                    Ok(_) => Err(too_large(codec, max_out)),
                    Err(e) => Err(failed(codec, &e)),
                };
            }
            let grown = filled
                .saturating_mul(2)
                .max(filled + READ_CHUNK)
                .min(max_out);
            out.reserve_exact(grown - filled);
            out.resize(grown, 0);
        }
        match read_retrying(&mut r, &mut out[filled..]) {
            Ok(0) => {
                out.truncate(filled);
                return Ok(out);
            }
            Ok(n) => filled += n,
            Err(e) => return Err(failed(codec, &e)),
        }
    }
}

fn read_retrying(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match r.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

/// Appends one raw snappy block to `out`, checking the length the block
/// claims against what `out` may still take before allocating it.
fn snappy_block_into(block: &[u8], max_out: usize, out: &mut Vec<u8>) -> Result<(), BatchError> {
    let codec = Codec::Snappy;
    if block.is_empty() {
        return Err(failed(codec, &"empty snappy block"));
    }
    let len = snap::raw::decompress_len(block).map_err(|e| failed(codec, &e))?;
    if len > max_out.saturating_sub(out.len()) {
        return Err(too_large(codec, max_out));
    }
    if len > block.len().saturating_mul(SNAPPY_MAX_RATIO) {
        // A lie no allocation should follow.
        return Err(failed(
            codec,
            &format_args!(
                "a {}-byte block claims {len} bytes, more than snappy can encode in it",
                block.len()
            ),
        ));
    }
    let start = out.len();
    out.reserve_exact(len);
    out.resize(start + len, 0);
    match snap::raw::Decoder::new().decompress(block, &mut out[start..]) {
        Ok(n) => {
            out.truncate(start + n);
            Ok(())
        }
        Err(e) => {
            out.truncate(start);
            Err(failed(codec, &e))
        }
    }
}

/// The xerial framing: a header, then `[u32 BE length][raw snappy block]`
/// chunks to the end. A header may recur between chunks (concatenated
/// streams, as xerial's own reader accepts).
fn xerial_decompress(input: &[u8], max_out: usize) -> Result<Vec<u8>, BatchError> {
    let codec = Codec::Snappy;
    let mut out = Vec::new();
    let mut rest = input;
    while !rest.is_empty() {
        if rest.starts_with(XERIAL_MAGIC) {
            if rest.len() < XERIAL_HEADER_LEN {
                return Err(failed(codec, &"truncated xerial snappy header"));
            }
            rest = &rest[XERIAL_HEADER_LEN..];
            continue;
        }
        let Some((len, tail)) = rest.split_first_chunk::<4>() else {
            return Err(failed(codec, &"truncated xerial snappy chunk length"));
        };
        let len = u32::from_be_bytes(*len) as usize;
        if len > tail.len() {
            return Err(failed(
                codec,
                &format_args!("xerial snappy chunk of {len} bytes, {} present", tail.len()),
            ));
        }
        let (block, after) = tail.split_at(len);
        if !block.is_empty() {
            snappy_block_into(block, max_out, &mut out)?;
        }
        rest = after;
    }
    Ok(out)
}
