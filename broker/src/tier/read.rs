//! Reads from object storage: the sparse index of a remote segment, its
//! bytes in cached chunks (with read-ahead), whole batches from an offset,
//! and the offset for a timestamp.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::{Bytes, BytesMut};
use object_store::ObjectStoreExt;
use object_store::path::Path as ObjPath;
use strata_proto::batch::{self, HEADER_LEN};

use super::{READ_AHEAD_BYTES, RemoteIndex, RemoteLoc, RemoteSegment, Tier, TierError, store_err};

impl Tier {
    /// All of object `key`, counted in the download metrics.
    async fn get_whole(&self, key: &ObjPath) -> Result<Bytes, TierError> {
        let got = async {
            let r = self.store.get(key).await.map_err(|e| store_err(key, e))?;
            r.bytes().await.map_err(|e| store_err(key, e))
        }
        .await
        .inspect_err(|_| {
            self.metrics.download_errors.fetch_add(1, Ordering::Relaxed);
        })?;
        self.metrics
            .downloaded_bytes
            .fetch_add(got.len() as u64, Ordering::Relaxed);
        Ok(got)
    }

    async fn index(
        &self,
        loc: &RemoteLoc,
        seg: &RemoteSegment,
    ) -> Result<Arc<RemoteIndex>, TierError> {
        let key = self.index_key(loc, seg);
        if let Some(i) = self
            .indexes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(key.as_ref())
        {
            return Ok(Arc::clone(i));
        }
        let got = self.get_whole(&key).await?;
        let idx = RemoteIndex::decode(&got).map_err(|e| {
            self.metrics.corrupt_reads.fetch_add(1, Ordering::Relaxed);
            TierError::Corrupt(format!("{key}: {e}"))
        })?;
        let idx = Arc::new(idx);
        let mut map = self.indexes.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= 4096 {
            map.clear();
        }
        map.insert(key.as_ref().to_owned(), Arc::clone(&idx));
        Ok(idx)
    }

    async fn chunk(&self, key: &ObjPath, size: u64, k: u64) -> Result<Bytes, TierError> {
        let chunk = self.settings.chunk_bytes;
        let start = k * chunk;
        let end = (start + chunk).min(size);
        self.cache
            .get(key.as_ref(), k, || async {
                let b = self
                    .store
                    .get_range(key, start..end)
                    .await
                    .map_err(|e| store_err(key, e))
                    .inspect_err(|_| {
                        self.metrics.download_errors.fetch_add(1, Ordering::Relaxed);
                    })?;
                if b.len() as u64 != end - start {
                    return Err(TierError::Corrupt(format!(
                        "{key}: {} bytes where {} were expected",
                        b.len(),
                        end - start
                    )));
                }
                self.metrics
                    .downloaded_bytes
                    .fetch_add(b.len() as u64, Ordering::Relaxed);
                Ok(b)
            })
            .await
    }

    /// Whether bytes `[pos, pos + len)` of `key` are all in the cache.
    fn cached(&self, key: &ObjPath, pos: u64, len: usize) -> bool {
        let chunk = self.settings.chunk_bytes;
        let last = (pos + len.max(1) as u64 - 1) / chunk;
        (pos / chunk..=last).all(|k| self.cache.ready(key.as_ref(), k))
    }

    /// Bytes `[pos, pos + len)` of object `key` of `size` bytes.
    async fn range(
        &self,
        key: &ObjPath,
        size: u64,
        pos: u64,
        len: usize,
    ) -> Result<Bytes, TierError> {
        let end = pos + len as u64;
        if end > size {
            return Err(TierError::Corrupt(format!(
                "{key}: a batch runs past the end of the object ({end} > {size})"
            )));
        }
        let chunk = self.settings.chunk_bytes;
        let (first, last) = (pos / chunk, (end - 1) / chunk);
        if first == last {
            let c = self.chunk(key, size, first).await?;
            let at = (pos - first * chunk) as usize;
            return Ok(c.slice(at..at + len));
        }
        let mut out = BytesMut::with_capacity(len);
        for k in first..=last {
            let c = self.chunk(key, size, k).await?;
            let lo = pos.max(k * chunk) - k * chunk;
            let hi = end.min((k + 1) * chunk) - k * chunk;
            out.extend_from_slice(&c[lo as usize..hi as usize]);
        }
        Ok(out.freeze())
    }

    fn corrupt(&self, key: &ObjPath, what: String) -> TierError {
        self.metrics.corrupt_reads.fetch_add(1, Ordering::Relaxed);
        self.cache.forget(key.as_ref());
        tracing::error!(object = %key, "{what}");
        TierError::Corrupt(format!("{key}: {what}"))
    }

    /// Whole batches of `seg` from the one holding `offset`: up to
    /// `max_bytes` (the first whole when `first_whole`), below `limit`.
    /// Returns the bytes and the offset after them (after the segment's
    /// last batch when only empty batches follow `offset`).
    pub async fn read(
        self: &Arc<Self>,
        loc: &RemoteLoc,
        seg: &RemoteSegment,
        offset: i64,
        max_bytes: usize,
        limit: i64,
        first_whole: bool,
    ) -> Result<(Bytes, i64), TierError> {
        let idx = self.index(loc, seg).await?;
        let key = self.data_key(loc, seg);
        let mut pos = idx.floor(offset).map_or(0, |e| e.pos);
        let mut out = BytesMut::new();
        let mut next = offset;
        // Where the batches skipped before the first one returned end
        // (compaction leaves empty batches spanning offsets).
        let mut skipped_to = offset.max(seg.base);
        let mut first_pos = pos;
        while pos < seg.size {
            // Once there is something to answer with, answer rather than
            // wait for another download (sequential readers find it
            // fetched ahead by their next request).
            let head_len = HEADER_LEN.min((seg.size - pos) as usize);
            if !out.is_empty() && !self.cached(&key, pos, head_len) {
                break;
            }
            let head = self.range(&key, seg.size, pos, head_len).await?;
            let h = batch::parse_header(&head)
                .map_err(|e| self.corrupt(&key, format!("batch at byte {pos}: {e}")))?;
            let len = h.total_len();
            if !out.is_empty() && !self.cached(&key, pos, len) {
                break;
            }
            if h.next_offset() <= offset || h.records_count == 0 && out.is_empty() {
                skipped_to = skipped_to.max(h.next_offset());
                pos += len as u64;
                continue;
            }
            if h.records_count > 0 && h.next_offset() > limit {
                break;
            }
            if (!out.is_empty() || !first_whole) && out.len() + len > max_bytes {
                break;
            }
            let b = self.range(&key, seg.size, pos, len).await?;
            batch::verify_crc(&b).map_err(|e| {
                self.corrupt(
                    &key,
                    format!("batch at offset {} (byte {pos}): {e}", h.base_offset),
                )
            })?;
            // Offsets are not under the checksum: they must run on.
            let misplaced = if out.is_empty() {
                h.base_offset > skipped_to
            } else {
                h.base_offset != next
            };
            if misplaced {
                return Err(self.corrupt(
                    &key,
                    format!(
                        "batch at byte {pos} has offset {} where {} was expected",
                        h.base_offset,
                        if out.is_empty() { skipped_to } else { next }
                    ),
                ));
            }
            if out.is_empty() {
                first_pos = pos;
            }
            out.extend_from_slice(&b);
            next = h.next_offset().max(next);
            pos += len as u64;
        }
        // Sequential consumers (this read starts where the last one of the
        // object ended, or at its start) find the next chunks waiting.
        let chunk = self.settings.chunk_bytes;
        let sequential = {
            let mut ends = self.read_ends.lock().unwrap_or_else(|e| e.into_inner());
            let seq = first_pos == 0
                || ends
                    .get(key.as_ref())
                    .is_some_and(|e| first_pos / chunk <= e / chunk + 1 && *e <= first_pos + chunk);
            if ends.len() >= 4096 {
                ends.clear();
            }
            ends.insert(key.as_ref().to_owned(), pos);
            seq
        };
        if sequential {
            let chunks = seg.size.div_ceil(chunk);
            let from = pos / chunk;
            let ahead = (READ_AHEAD_BYTES / chunk).max(1);
            for k in from..(from + ahead).min(chunks) {
                if !self.cache.contains(key.as_ref(), k) {
                    let me = Arc::clone(self);
                    let key = key.clone();
                    let size = seg.size;
                    tokio::spawn(async move {
                        let _ = me.chunk(&key, size, k).await;
                    });
                }
            }
        }
        if out.is_empty() && pos >= seg.size {
            // Nothing but empty batches from `offset`: the read goes on
            // after them.
            next = skipped_to;
        }
        Ok((out.freeze(), next))
    }

    /// All of `seg`'s data, every batch checked (for a compaction pass;
    /// not through the chunk cache).
    pub async fn download(&self, loc: &RemoteLoc, seg: &RemoteSegment) -> Result<Bytes, TierError> {
        let key = self.data_key(loc, seg);
        let got = self.get_whole(&key).await?;
        if got.len() as u64 != seg.size {
            return Err(self.corrupt(
                &key,
                format!("{} bytes where {} were expected", got.len(), seg.size),
            ));
        }
        let data = got.clone();
        let base = seg.base;
        tokio::task::spawn_blocking(move || super::build_index(&data, base))
            .await
            .map_err(|e| TierError::Unavailable(format!("check task: {e}")))?
            .map_err(|e| self.corrupt(&key, e))?;
        Ok(got)
    }

    /// The first record of `seg` with a timestamp >= `ts` at or after
    /// `start`: (offset, timestamp).
    pub async fn offset_for_timestamp(
        &self,
        loc: &RemoteLoc,
        seg: &RemoteSegment,
        ts: i64,
        start: i64,
    ) -> Result<Option<(i64, i64)>, TierError> {
        let idx = self.index(loc, seg).await?;
        let key = self.data_key(loc, seg);
        let mut pos = idx.floor_time(ts).map_or(0, |e| e.pos);
        while pos < seg.size {
            let head = self
                .range(
                    &key,
                    seg.size,
                    pos,
                    HEADER_LEN.min((seg.size - pos) as usize),
                )
                .await?;
            let h = batch::parse_header(&head)
                .map_err(|e| self.corrupt(&key, format!("batch at byte {pos}: {e}")))?;
            let len = h.total_len();
            if h.records_count > 0 && h.max_timestamp >= ts && h.next_offset() > start {
                let b = self.range(&key, seg.size, pos, len).await?;
                batch::verify_crc(&b)
                    .map_err(|e| self.corrupt(&key, format!("batch at byte {pos}: {e}")))?;
                let recs = batch::records(&b)
                    .map_err(|e| self.corrupt(&key, format!("batch at byte {pos}: {e}")))?;
                for r in recs {
                    let r =
                        r.map_err(|e| self.corrupt(&key, format!("batch at byte {pos}: {e}")))?;
                    if r.timestamp >= ts && r.offset >= start {
                        return Ok(Some((r.offset, r.timestamp)));
                    }
                }
            }
            pos += len as u64;
        }
        Ok(None)
    }
}
