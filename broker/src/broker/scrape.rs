//! What `GET /metrics` shows besides the process's counters
//! (`crate::metrics`): read from the broker at scrape time, per-partition
//! Raft state, replication health, consumer-group lag and tiered-storage
//! figures.

use std::sync::atomic::Ordering;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::Broker;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PartitionLabel {
    topic: String,
    partition: u32,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GroupOnly {
    group: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LagLabel {
    group: String,
    topic: String,
    partition: u32,
}

fn gauge(v: i64) -> Gauge {
    let g = Gauge::default();
    g.set(v);
    g
}

fn counter(v: u64) -> Counter {
    let c = Counter::default();
    c.inc_by(v);
    c
}

/// Everything as OpenMetrics text.
pub fn render(broker: &Broker) -> String {
    let mut out = String::new();
    crate::metrics::global().encode(&mut out);
    let mut r = Registry::with_prefix("strata");
    let me = broker.node_id();

    // Replicas hosted here: Raft position and offsets.
    let term = Family::<PartitionLabel, Gauge>::default();
    let leader = Family::<PartitionLabel, Gauge>::default();
    let hw = Family::<PartitionLabel, Gauge>::default();
    let end = Family::<PartitionLabel, Gauge>::default();
    let lag = Family::<PartitionLabel, Gauge>::default();
    let size = Family::<PartitionLabel, Gauge>::default();
    let mut leaderless = 0i64;
    // The cleaner's lag over the compacted replicas hosted here.
    let (mut dirty_bytes, mut max_dirty) = (0u64, 0f64);
    for p in broker.all_partitions() {
        if let Some(c) = p.cleaner_state() {
            dirty_bytes += (c.cleanable_bytes as f64 * c.dirty_ratio) as u64;
            max_dirty = max_dirty.max(c.dirty_ratio);
        }
        if p.topic() == crate::cluster::controller::METADATA_TOPIC {
            continue;
        }
        let l = PartitionLabel {
            topic: p.topic().to_owned(),
            partition: p.id(),
        };
        let role = p.role();
        let o = p.offsets();
        term.get_or_create(&l).set(role.term as i64);
        leader.get_or_create(&l).set(role.leader as i64);
        hw.get_or_create(&l).set(o.high_watermark);
        end.get_or_create(&l).set(o.log_end);
        lag.get_or_create(&l).set(o.log_end - o.high_watermark);
        size.get_or_create(&l).set(o.size_bytes as i64);
        if role.leader == 0 {
            leaderless += 1;
        }
    }
    r.register(
        "cleaner_dirty_bytes",
        "Cleanable bytes of compacted replicas hosted here that no pass has cleaned yet",
        gauge(dirty_bytes as i64),
    );
    r.register(
        "cleaner_max_dirty_percent",
        "Largest dirty share of a compacted replica hosted here, in percent",
        gauge((max_dirty * 100.0).round() as i64),
    );
    r.register(
        "partition_raft_term",
        "Raft term of the replica's group",
        term,
    );
    r.register(
        "partition_leader",
        "Leader broker id as this replica sees it (0 = none)",
        leader,
    );
    r.register(
        "partition_high_watermark",
        "Committed offset end of the replica",
        hw,
    );
    r.register(
        "partition_log_end_offset",
        "Log end offset of the replica",
        end,
    );
    r.register(
        "partition_commit_lag",
        "Offsets appended to the replica but not yet committed",
        lag,
    );
    r.register("partition_size_bytes", "Local bytes of the replica", size);

    // Partitions this broker leads: replication health.
    let assignments = broker.with_state(|s| {
        s.topics
            .iter()
            .map(|(n, t)| (n.clone(), t.assignments.clone()))
            .collect::<std::collections::HashMap<_, _>>()
    });
    let led = broker.local_replica_states(super::StatesQuery::default());
    let under = led
        .iter()
        .filter(|st| {
            let replicas = assignments
                .get(&st.topic)
                .and_then(|a| a.get(st.partition as usize))
                .map_or(0, Vec::len);
            st.isr.len() < replicas
        })
        .count();
    r.register(
        "leader_partitions",
        "Partitions this broker leads",
        gauge(led.len() as i64),
    );
    r.register(
        "under_replicated_partitions",
        "Partitions led here whose in-sync replicas are fewer than their replicas",
        gauge(under as i64),
    );
    r.register(
        "leaderless_partitions",
        "Replicas hosted here that know no leader",
        gauge(leaderless),
    );
    // The controller's metadata log and the snapshot of its state.
    let meta = broker.controller().part.core();
    let snapshot = meta.state_snapshot();
    r.register(
        "metadata_log_bytes",
        "Bytes of the metadata log kept (what follows the last snapshot)",
        gauge(meta.with_log(|log, _| log.size_bytes()) as i64),
    );
    r.register(
        "metadata_snapshot_bytes",
        "Bytes of the latest metadata state snapshot (0: none)",
        gauge(snapshot.as_ref().map_or(0, |s| s.data.len() as i64)),
    );
    r.register(
        "metadata_snapshot_index",
        "Raft index the latest metadata state snapshot covers (0: none)",
        gauge(snapshot.as_ref().map_or(0, |s| s.index as i64)),
    );
    r.register(
        "metadata_snapshot_age_seconds",
        "Seconds since the latest metadata state snapshot was taken (-1: none)",
        gauge(
            meta.state_snapshot_taken_ms()
                .map_or(-1, |t| (crate::log::now_ms() - t).max(0) / 1000),
        ),
    );
    r.register(
        "broker_ready",
        "1 when the broker is caught up and serving (as /ready)",
        gauge(i64::from(broker.check_ready().is_ok())),
    );
    r.register("node_id", "This broker's id", gauge(me as i64));

    // Consumer-group lag of the partitions led here.
    let group_lag = Family::<LagLabel, Gauge>::default();
    let hws: std::collections::HashMap<(String, u32), i64> = led
        .iter()
        .map(|st| ((st.topic.clone(), st.partition), st.high_watermark))
        .collect();
    for (group, topic, partition, offset) in broker.groups().all_committed() {
        if let Some(hw) = hws.get(&(topic.clone(), partition)) {
            group_lag
                .get_or_create(&LagLabel {
                    group,
                    topic,
                    partition,
                })
                .set((hw - offset).max(0));
        }
    }
    r.register(
        "consumer_group_lag",
        "High watermark minus the group's committed offset (partitions led here)",
        group_lag,
    );

    // Groups with membership this broker coordinates: by state, and their
    // members.
    let by_state = Family::<StateLabel, Gauge>::default();
    let members = Family::<GroupOnly, Gauge>::default();
    for state in ["empty", "reconciling", "stable"] {
        by_state
            .get_or_create(&StateLabel {
                state: state.to_owned(),
            })
            .set(0);
    }
    for (group, state, n) in broker.groups().coordinated() {
        by_state
            .get_or_create(&StateLabel {
                state: state.to_owned(),
            })
            .inc();
        members
            .get_or_create(&GroupOnly { group })
            .set(i64::from(n));
    }
    r.register(
        "consumer_groups",
        "Groups with membership coordinated here, by state",
        by_state,
    );
    r.register(
        "consumer_group_members",
        "Members of the groups coordinated here",
        members,
    );

    // Tiered storage.
    let t = broker.tier();
    let m = &t.metrics;
    let ld = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    let counters = [
        (
            "tier_uploaded_bytes",
            "Bytes uploaded to object storage",
            &m.uploaded_bytes,
        ),
        (
            "tier_uploaded_segments",
            "Segments uploaded to object storage",
            &m.uploaded_segments,
        ),
        (
            "tier_upload_errors",
            "Failed segment uploads",
            &m.upload_errors,
        ),
        (
            "tier_downloaded_bytes",
            "Bytes read from object storage",
            &m.downloaded_bytes,
        ),
        (
            "tier_download_errors",
            "Failed object storage reads",
            &m.download_errors,
        ),
        (
            "tier_corrupt_reads",
            "Remote reads that found corrupt or missing data",
            &m.corrupt_reads,
        ),
        (
            "tier_deleted_segments",
            "Remote segments deleted",
            &m.deleted_segments,
        ),
        (
            "tier_compaction_passes",
            "Remote compaction passes swapped into a manifest",
            &m.compaction_passes,
        ),
        (
            "tier_compaction_reclaimed_bytes",
            "Remote bytes removed by compaction",
            &m.compaction_reclaimed_bytes,
        ),
        (
            "tier_cache_hits",
            "Remote chunk reads served by the cache",
            &t.cache().hits,
        ),
        (
            "tier_cache_misses",
            "Remote chunk reads that went to object storage",
            &t.cache().misses,
        ),
    ];
    for (name, help, v) in counters {
        r.register(name, help, counter(ld(v)));
    }
    r.register(
        "tier_upload_backlog_bytes",
        "Committed bytes of led tiered partitions not yet uploaded",
        gauge(ld(&m.backlog_bytes) as i64),
    );
    r.register(
        "tier_cache_bytes",
        "Bytes in the remote chunk cache",
        gauge(t.cache().size() as i64),
    );

    let _ = prometheus_client::encoding::text::encode(&mut out, &r);
    out
}
