//! A response frame as a list of chunks, written with vectored writes.
//!
//! The codec's encodings and small pieces are copied into an owned buffer;
//! large stored record bodies are shared instead (they point into the
//! segment's mmap), so a Fetch answer goes from the page cache to the
//! socket without being copied into a response buffer first.

use std::io::IoSlice;

use bytes::{BufMut, Bytes, BytesMut};
use tokio::io::{AsyncWrite, AsyncWriteExt};

/// Shared pieces shorter than this are copied: a separate chunk costs more
/// than the copy.
const SHARE_AT_LEAST: usize = 4096;
/// Chunks handed to one vectored write.
const MAX_IOV: usize = 64;

enum Piece {
    Own(BytesMut),
    Shared(Bytes),
}

/// Builds a frame: a 4-byte size, then what is put in order.
pub struct FrameWriter {
    done: Vec<Piece>,
    buf: BytesMut,
}

impl Default for FrameWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl FrameWriter {
    pub fn new() -> Self {
        let mut buf = BytesMut::with_capacity(256);
        buf.put_i32(0);
        Self {
            done: Vec::new(),
            buf,
        }
    }

    /// The owned buffer, for encoders to append to.
    pub fn buf(&mut self) -> &mut BytesMut {
        &mut self.buf
    }

    /// Appends `b`, sharing it rather than copying it when it is large.
    pub fn put_shared(&mut self, b: &Bytes) {
        if b.len() < SHARE_AT_LEAST {
            self.buf.extend_from_slice(b);
            return;
        }
        if !self.buf.is_empty() {
            self.done.push(Piece::Own(self.buf.split()));
        }
        self.done.push(Piece::Shared(b.clone()));
    }

    /// The frame, its size prefix filled in.
    pub fn finish(mut self) -> Frame {
        if !self.buf.is_empty() {
            self.done.push(Piece::Own(self.buf.split()));
        }
        let total: usize = self
            .done
            .iter()
            .map(|p| match p {
                Piece::Own(b) => b.len(),
                Piece::Shared(b) => b.len(),
            })
            .sum();
        // Frames are bounded far below i32::MAX by the fetch limits.
        let size = i32::try_from(total.saturating_sub(4)).unwrap_or(i32::MAX);
        let chunks = self
            .done
            .into_iter()
            .enumerate()
            .map(|(i, p)| match p {
                Piece::Own(mut b) => {
                    if i == 0 {
                        b[..4].copy_from_slice(&size.to_be_bytes());
                    }
                    b.freeze()
                }
                Piece::Shared(b) => b,
            })
            .collect();
        Frame(chunks)
    }
}

/// A whole response frame, size prefix included.
pub struct Frame(Vec<Bytes>);

impl Frame {
    /// Bytes in the frame.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.0.iter().map(Bytes::len).sum()
    }

    /// The frame's chunks in order.
    #[cfg(test)]
    pub fn chunks(&self) -> &[Bytes] {
        &self.0
    }

    /// The frame as one buffer.
    #[cfg(test)]
    pub fn to_bytes(&self) -> Bytes {
        match self.0.as_slice() {
            [one] => one.clone(),
            many => {
                let mut b = BytesMut::with_capacity(self.len());
                for c in many {
                    b.extend_from_slice(c);
                }
                b.freeze()
            }
        }
    }

    /// Writes the frame with as few (vectored) writes as the writer takes.
    pub async fn write_to<W: AsyncWrite + Unpin>(&self, w: &mut W) -> std::io::Result<()> {
        let mut chunk = 0;
        let mut off = 0;
        while chunk < self.0.len() {
            if off == self.0[chunk].len() {
                chunk += 1;
                off = 0;
                continue;
            }
            let slices: Vec<IoSlice<'_>> = std::iter::once(&self.0[chunk][off..])
                .chain(self.0[chunk + 1..].iter().map(|b| &b[..]))
                .filter(|s| !s.is_empty())
                .take(MAX_IOV)
                .map(IoSlice::new)
                .collect();
            let mut n = w.write_vectored(&slices).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
            while n > 0 && chunk < self.0.len() {
                let left = self.0[chunk].len() - off;
                if n >= left {
                    n -= left;
                    chunk += 1;
                    off = 0;
                } else {
                    off += n;
                    n = 0;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer that takes at most `step` bytes per call, vectored.
    struct Trickle {
        out: Vec<u8>,
        step: usize,
    }

    impl AsyncWrite for Trickle {
        fn poll_write(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &[u8],
        ) -> std::task::Poll<std::io::Result<usize>> {
            let n = buf.len().min(self.step);
            self.out.extend_from_slice(&buf[..n]);
            std::task::Poll::Ready(Ok(n))
        }
        fn poll_write_vectored(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            bufs: &[IoSlice<'_>],
        ) -> std::task::Poll<std::io::Result<usize>> {
            let mut left = self.step;
            let mut n = 0;
            for b in bufs {
                let take = b.len().min(left);
                self.out.extend_from_slice(&b[..take]);
                n += take;
                left -= take;
                if left == 0 {
                    break;
                }
            }
            std::task::Poll::Ready(Ok(n))
        }
        fn is_write_vectored(&self) -> bool {
            true
        }
        fn poll_flush(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
        fn poll_shutdown(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
    }

    fn frame() -> (Frame, Vec<u8>) {
        let big: Bytes = (0..10_000u32).map(|i| i as u8).collect::<Vec<u8>>().into();
        let mut w = FrameWriter::new();
        w.buf().put_u16(7);
        w.put_shared(&Bytes::from_static(b"small"));
        w.put_shared(&big);
        w.buf().put_u8(9);
        w.put_shared(&big);
        w.put_shared(&Bytes::new());
        let f = w.finish();
        let mut want = Vec::new();
        want.extend_from_slice(&(2i32 + 5 + 10_000 + 1 + 10_000).to_be_bytes());
        want.extend_from_slice(&7u16.to_be_bytes());
        want.extend_from_slice(b"small");
        want.extend_from_slice(&big);
        want.push(9);
        want.extend_from_slice(&big);
        (f, want)
    }

    #[test]
    fn large_pieces_are_shared_and_the_size_covers_them() {
        let (f, want) = frame();
        assert_eq!(f.chunks().len(), 4, "own, shared, own, shared");
        assert_eq!(f.len(), want.len());
        assert_eq!(&f.to_bytes()[..], &want[..]);
    }

    #[tokio::test]
    async fn partial_vectored_writes_send_every_byte_once() {
        let (f, want) = frame();
        for step in [1, 3, 4096, 10_001, 1 << 20] {
            let mut w = Trickle {
                out: Vec::new(),
                step,
            };
            f.write_to(&mut w).await.expect("writes");
            assert_eq!(w.out, want, "step {step}");
        }
    }

    #[test]
    fn a_frame_of_only_owned_bytes_is_one_chunk() {
        let mut w = FrameWriter::new();
        w.buf().put_slice(b"abc");
        let f = w.finish();
        assert_eq!(f.chunks().len(), 1);
        assert_eq!(&f.to_bytes()[..], &[0, 0, 0, 3, b'a', b'b', b'c'][..]);
    }
}
