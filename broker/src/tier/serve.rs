//! The read side of tiered storage as the data path sees it: a partition's
//! log starts at its remote start; reads below the local start come from
//! object storage.

use std::sync::Arc;

use super::host::TierHost;
use super::{RemoteLoc, RemoteSegment};
use crate::error::{BrokerError, Result};
use crate::log::ReadInfo;
use crate::partition::{Offsets, Partition};

/// The first readable offset given the local start: the remote start
/// when object storage holds older data.
pub fn log_start(broker: &impl TierHost, part: &Partition, local_start: i64) -> i64 {
    broker.with_manifest(part.topic(), part.id(), |m, _| {
        m.filter(|m| !m.segments.is_empty() && m.start < local_start)
            .map_or(local_start, |m| m.start)
    })
}

/// Where `offset` is in object storage, if it is there and not local.
fn remote_segment(
    broker: &impl TierHost,
    part: &Partition,
    offset: i64,
) -> Option<(RemoteLoc, RemoteSegment)> {
    broker.with_manifest(part.topic(), part.id(), |m, topic_id| {
        let m = m?;
        if !m.covers(offset) {
            return None;
        }
        let seg = m.segment_for(offset)?.clone();
        let id = topic_id?.to_owned();
        Some((
            RemoteLoc {
                topic: part.topic().to_owned(),
                topic_id: id,
                partition: part.id(),
            },
            seg,
        ))
    })
}

/// Offsets with the log start as clients see it.
pub fn offsets(broker: &impl TierHost, part: &Partition) -> Offsets {
    let mut o = part.offsets();
    o.log_start = log_start(broker, part, o.log_start);
    o
}

/// Reads whole batches from `offset` (see `Partition::read_with`), from
/// object storage when `offset` is below the local start. A remote
/// segment that holds only empty batches from `offset` on (compaction
/// left them) is read past, as the local log reads past such a segment.
pub async fn read(
    broker: &impl TierHost,
    part: &Arc<Partition>,
    offset: i64,
    max_bytes: usize,
    first_whole: bool,
) -> Result<(ReadInfo, Offsets)> {
    let mut at = offset;
    loop {
        let (info, offs) = read_once(broker, part, at, max_bytes, first_whole).await?;
        let past_empty = info.records.is_empty()
            && info.next_offset > at
            && info.next_offset < offs.high_watermark
            && at < part.local_start();
        if !past_empty {
            return Ok((info, offs));
        }
        at = info.next_offset;
    }
}

async fn read_once(
    broker: &impl TierHost,
    part: &Arc<Partition>,
    offset: i64,
    max_bytes: usize,
    first_whole: bool,
) -> Result<(ReadInfo, Offsets)> {
    // Local first (one partition lock); only an offset below the local
    // start goes on to object storage.
    match part.read_with(offset, max_bytes, first_whole) {
        Ok((info, mut offs)) => {
            offs.log_start = log_start(broker, part, offs.log_start);
            return Ok((info, offs));
        }
        Err(BrokerError::OffsetOutOfRange { start, .. }) if offset < start => {}
        Err(BrokerError::OffsetOutOfRange {
            topic,
            partition,
            offset,
            start,
            end,
        }) => {
            return Err(BrokerError::OffsetOutOfRange {
                start: log_start(broker, part, start),
                topic,
                partition,
                offset,
                end,
            });
        }
        Err(e) => return Err(e),
    }
    let offs = offsets(broker, part);
    let Some((loc, seg)) = remote_segment(broker, part, offset) else {
        return Err(BrokerError::OffsetOutOfRange {
            topic: part.topic().to_owned(),
            partition: part.id(),
            offset,
            start: offs.log_start,
            end: offs.high_watermark,
        });
    };
    let read = |seg: RemoteSegment| {
        let loc = loc.clone();
        async move {
            broker
                .tier()
                .read(
                    &loc,
                    &seg,
                    offset,
                    max_bytes,
                    offs.high_watermark,
                    first_whole,
                )
                .await
        }
    };
    let (records, next) = match read(seg.clone()).await {
        Ok(got) => Ok(got),
        // Compaction replaced the segment meanwhile: read its successor.
        Err(e) => match remote_segment(broker, part, offset) {
            Some((_, now)) if now != seg => read(now).await,
            _ => Err(e),
        },
    }
    .map_err(|e| {
        let e = BrokerError::from(e);
        tracing::warn!(topic = %loc.topic, partition = loc.partition, offset,
            segment_base = seg.base, error = %e, "remote read failed");
        e
    })?;
    Ok((
        ReadInfo {
            records,
            next_offset: next,
        },
        offs,
    ))
}

/// The first offset with a timestamp >= `ts` (and that timestamp),
/// searching object storage first for data older than the local log.
pub async fn offset_for_timestamp(
    broker: &impl TierHost,
    part: &Arc<Partition>,
    ts: i64,
) -> Result<Option<(i64, i64)>> {
    let local_start = part.local_start();
    let start = log_start(broker, part, local_start);
    let candidates: Vec<(RemoteLoc, RemoteSegment)> =
        broker.with_manifest(part.topic(), part.id(), |m, topic_id| {
            let (Some(m), Some(topic_id)) = (m, topic_id) else {
                return Vec::new();
            };
            let loc = RemoteLoc {
                topic: part.topic().to_owned(),
                topic_id: topic_id.to_owned(),
                partition: part.id(),
            };
            m.segments
                .iter()
                .filter(|g| g.next > start && g.base < local_start && g.max_ts >= ts)
                .map(|g| (loc.clone(), g.clone()))
                .collect()
        });
    for (loc, seg) in candidates {
        if let Some(found) = broker
            .tier()
            .offset_for_timestamp(&loc, &seg, ts, start)
            .await?
        {
            return Ok(Some(found));
        }
    }
    part.offset_for_timestamp(ts)
}

/// DeleteRecords (-1 = the high watermark) across both tiers: the local
/// log start moves through Raft (when the target is past it), and the
/// remote start through the controller, whose manifest then drops the
/// segments below (their objects go after). Answers the new log start.
pub async fn delete_records(
    broker: &impl TierHost,
    part: &Arc<Partition>,
    offset: i64,
    timeout: std::time::Duration,
) -> Result<i64> {
    let hw = part.high_watermark();
    let target = if offset == -1 { hw } else { offset };
    let local_start = part.local_start();
    let start = log_start(broker, part, local_start);
    if target < start || target > hw {
        return Err(BrokerError::OffsetOutOfRange {
            topic: part.topic().to_owned(),
            partition: part.id(),
            offset,
            start,
            end: hw,
        });
    }
    if target > local_start {
        part.delete_records(target, timeout).await?;
    }
    let remote = broker.with_manifest(part.topic(), part.id(), |m, topic_id| {
        let m = m?.clone();
        Some((
            RemoteLoc {
                topic: part.topic().to_owned(),
                topic_id: topic_id?.to_owned(),
                partition: part.id(),
            },
            m,
        ))
    });
    if let Some((loc, m)) = remote
        && target > m.start
    {
        super::uploader::trim(broker, &loc, &m, target).await?;
    }
    Ok(target.max(start))
}
