//! `strata consume TOPIC`: prints records one per line (value or JSON),
//! from all partitions or one, until `--count`, `--idle-exit`, Ctrl-C or
//! SIGTERM. With `--group` (and no partition or start given) it joins the
//! group and reads what the coordinator assigns it, so several copies
//! share the partitions; assignment changes go to stderr, one line each.
//! With `--group` and a partition or start, it reads as told and commits
//! to the group. Positions are committed every second and at exit.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::time::{Duration, Instant, UNIX_EPOCH};

use clap::{Args, ValueEnum};
use serde::Serialize;
use strata_client::{
    Admin, AssignmentEvent, Consumer, ConsumerConfig, ConsumerRecord, OffsetReset, StartOffset,
    Subscription,
};

use crate::Ctx;
use crate::output::usage;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RecordFormat {
    /// The value as text.
    Value,
    /// One JSON object per record.
    Json,
}

#[derive(Debug, Args)]
pub struct ConsumeArgs {
    pub topic: String,
    /// Read only this partition (default: all).
    #[arg(long, short = 'p')]
    pub partition: Option<u32>,
    /// Where to start: earliest, latest or an offset.
    #[arg(long, short = 'o', conflicts_with = "from_time")]
    pub offset: Option<String>,
    /// Start at the first record at or after this time (RFC 3339, UTC).
    #[arg(long, value_name = "RFC3339")]
    pub from_time: Option<String>,
    /// Consumer group: resume from its committed offsets (when no start is
    /// given) and commit positions every second and at exit.
    #[arg(long, short = 'g')]
    pub group: Option<String>,
    /// Exit after this many records.
    #[arg(long, short = 'n')]
    pub count: Option<u64>,
    /// How to print records.
    #[arg(long, short = 'f', value_enum, default_value_t = RecordFormat::Value)]
    pub format: RecordFormat,
    /// Exit once no record arrived for this many milliseconds.
    #[arg(long, value_name = "MS")]
    pub idle_exit: Option<u64>,
    /// Static group membership: a restart within the session timeout gets
    /// the same partitions back without a rebalance.
    #[arg(long, requires = "group")]
    pub group_instance_id: Option<String>,
    /// The group member's session timeout (1,000 to 300,000 ms).
    #[arg(long, value_name = "MS", requires = "group", default_value_t = 45_000)]
    pub session_timeout: u64,
    /// The group's assignor: uniform or range.
    #[arg(long, requires = "group")]
    pub assignor: Option<String>,
}

/// One assignment change, as printed to stderr.
#[derive(Serialize)]
struct EventJson<'a> {
    event: &'a str,
    /// Milliseconds since the Unix epoch.
    at_ms: u128,
    partitions: Vec<String>,
}

fn print_event(e: &AssignmentEvent, f: RecordFormat) {
    let (event, tps) = match e {
        AssignmentEvent::Assigned(t) => ("assigned", t),
        AssignmentEvent::Revoked(t) => ("revoked", t),
        AssignmentEvent::Lost(t) => ("lost", t),
    };
    let partitions: Vec<String> = tps.iter().map(|(t, p)| format!("{t}/{p}")).collect();
    match f {
        RecordFormat::Json => {
            let at_ms = std::time::SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis());
            if let Ok(line) = serde_json::to_string(&EventJson {
                event,
                at_ms,
                partitions,
            }) {
                eprintln!("{line}");
            }
        }
        RecordFormat::Value => eprintln!("{event} {}", partitions.join(",")),
    }
}

/// Parses `--offset`.
fn parse_start(
    offset: Option<&str>,
    from_time: Option<&str>,
    group: bool,
) -> anyhow::Result<StartOffset> {
    if let Some(t) = from_time {
        let ts = humantime::parse_rfc3339_weak(t)
            .map_err(|e| usage(format!("invalid --from-time '{t}': {e}")))?;
        let ms = ts
            .duration_since(UNIX_EPOCH)
            .map_err(|_| usage(format!("--from-time '{t}' is before 1970")))?
            .as_millis();
        return Ok(StartOffset::Timestamp(ms as i64));
    }
    Ok(match offset {
        Some("earliest" | "beginning") => StartOffset::Earliest,
        Some("latest" | "end") => StartOffset::Latest,
        Some(n) => match n.parse::<i64>() {
            Ok(o) if o >= 0 => StartOffset::Offset(o),
            _ => {
                return Err(usage(format!(
                    "invalid --offset '{n}': expected earliest, latest or a non-negative offset"
                )));
            }
        },
        None if group => StartOffset::Committed,
        None => StartOffset::Earliest,
    })
}

#[derive(Serialize)]
struct RecordJson<'a> {
    topic: &'a str,
    partition: u32,
    offset: i64,
    timestamp: i64,
    key: Option<String>,
    value: Option<String>,
    headers: BTreeMap<&'a str, Option<String>>,
}

fn lossy(b: &Option<bytes::Bytes>) -> Option<String> {
    b.as_ref().map(|b| String::from_utf8_lossy(b).into_owned())
}

fn write_record(out: &mut impl Write, r: &ConsumerRecord, f: RecordFormat) -> std::io::Result<()> {
    match f {
        RecordFormat::Value => {
            if let Some(v) = &r.value {
                out.write_all(v)?;
            }
            out.write_all(b"\n")
        }
        RecordFormat::Json => {
            let j = RecordJson {
                topic: &r.topic,
                partition: r.partition,
                offset: r.offset,
                timestamp: r.timestamp,
                key: lossy(&r.key),
                value: lossy(&r.value),
                headers: r
                    .headers
                    .iter()
                    .map(|(k, v)| (k.as_str(), lossy(v)))
                    .collect(),
            };
            serde_json::to_writer(&mut *out, &j).map_err(std::io::Error::other)?;
            out.write_all(b"\n")
        }
    }
}

async fn commit(
    admin: &Admin,
    group: &str,
    topic: &str,
    pos: &HashMap<u32, i64>,
) -> anyhow::Result<()> {
    if pos.is_empty() {
        return Ok(());
    }
    let offsets: Vec<(String, u32, i64)> = pos
        .iter()
        .map(|(&p, &o)| (topic.to_owned(), p, o))
        .collect();
    admin.commit_group_offsets(group, &offsets).await?;
    Ok(())
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

pub async fn run(ctx: &Ctx, a: ConsumeArgs) -> anyhow::Result<()> {
    let start = parse_start(
        a.offset.as_deref(),
        a.from_time.as_deref(),
        a.group.is_some(),
    )?;
    if a.group.as_deref() == Some("") {
        return Err(usage("--group must not be empty"));
    }
    // An explicit offset that is out of range is an error, not a reset.
    let auto_offset_reset = match start {
        StartOffset::Offset(_) => OffsetReset::None,
        _ => OffsetReset::Earliest,
    };
    let subscribe =
        a.group.is_some() && a.partition.is_none() && a.offset.is_none() && a.from_time.is_none();
    if !subscribe && (a.group_instance_id.is_some() || a.assignor.is_some()) {
        return Err(usage(
            "--group-instance-id and --assignor need a group subscription (no --partition, --offset or --from-time)",
        ));
    }
    let cfg = ConsumerConfig {
        group: a.group.clone(),
        max_wait: Duration::from_millis(500),
        auto_offset_reset,
        group_instance_id: a.group_instance_id.clone(),
        session_timeout: Duration::from_millis(a.session_timeout),
        assignor: a.assignor.clone(),
        ..ConsumerConfig::default()
    };
    let mut consumer = Consumer::new(ctx.client.clone(), cfg)?;
    let admin = Admin::new(ctx.client.clone())?;
    let mut events = None;
    if subscribe {
        consumer.subscribe(Subscription::Topics(vec![a.topic.clone()]))?;
        events = consumer.assignment_events();
    } else {
        match a.partition {
            Some(p) => {
                consumer.assign(&a.topic, p, start).await?;
            }
            None => {
                consumer.assign_topic(&a.topic, start).await?;
            }
        }
    }
    if a.count == Some(0) {
        return Ok(());
    }
    let mut out = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout());
    let mut positions: HashMap<u32, i64> = HashMap::new();
    let mut printed = 0u64;
    let mut last_commit = Instant::now();
    let mut committed_positions = positions.clone();
    let idle = a.idle_exit.map(Duration::from_millis);
    let mut last_record = Instant::now();
    let signal = shutdown_signal();
    tokio::pin!(signal);
    let result: anyhow::Result<()> = async {
        loop {
            let idle_deadline = idle.map(|d| last_record + d);
            let tick = last_commit + Duration::from_secs(1);
            tokio::select! {
                () = &mut signal => break,
                () = sleep_until(idle_deadline), if idle_deadline.is_some() => break,
                () = tokio::time::sleep_until(tick.into()), if a.group.is_some() => {
                    if subscribe {
                        commit_member(&consumer, &a.topic, &positions).await;
                    } else if let Some(g) = &a.group && positions != committed_positions {
                        commit(&admin, g, &a.topic, &positions).await?;
                        committed_positions = positions.clone();
                    }
                    last_commit = Instant::now();
                }
                Some(e) = next_event(&mut events) => {
                    // What was printed of a partition before it moved is
                    // not this member's to commit any more (nor after it
                    // comes back: the position restarts from the commit).
                    let (AssignmentEvent::Assigned(tps)
                    | AssignmentEvent::Revoked(tps)
                    | AssignmentEvent::Lost(tps)) = &e;
                    for (_, p) in tps {
                        positions.remove(p);
                    }
                    print_event(&e, a.format);
                }
                batch = consumer.next_batch() => {
                    let Some(batch) = batch else { break };
                    let batch = batch?;
                    last_record = Instant::now();
                    let mut done = false;
                    for r in &batch {
                        write_record(&mut out, r, a.format)?;
                        positions.insert(r.partition, r.offset + 1);
                        printed += 1;
                        if a.count.is_some_and(|c| printed >= c) {
                            done = true;
                            break;
                        }
                    }
                    out.flush()?;
                    if done {
                        break;
                    }
                }
            }
        }
        Ok(())
    }
    .await;
    let flushed = out.flush();
    if subscribe {
        commit_member(&consumer, &a.topic, &positions).await;
        consumer.close().await;
    } else if let Some(g) = &a.group
        && positions != committed_positions
    {
        commit(&admin, g, &a.topic, &positions).await?;
    }
    result?;
    flushed?;
    Ok(())
}

/// Commits what a subscribed consumer printed, for the partitions it holds;
/// a refusal (the partition just moved) is not an error: the new owner
/// resumes from the last commit.
async fn commit_member(consumer: &Consumer, topic: &str, printed: &HashMap<u32, i64>) {
    let held: Vec<u32> = consumer.assignment().iter().map(|(_, p)| *p).collect();
    let offsets: Vec<(String, u32, i64)> = printed
        .iter()
        .filter(|(p, _)| held.contains(p))
        .map(|(&p, &o)| (topic.to_owned(), p, o))
        .collect();
    if offsets.is_empty() {
        return;
    }
    if let Err(e) = consumer.commit_offsets(&offsets).await {
        eprintln!("commit refused: {e}");
    }
}

async fn next_event(
    events: &mut Option<tokio::sync::mpsc::UnboundedReceiver<AssignmentEvent>>,
) -> Option<AssignmentEvent> {
    match events {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(at: Option<Instant>) {
    if let Some(at) = at {
        tokio::time::sleep_until(at.into()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_positions() {
        assert_eq!(
            parse_start(None, None, false).ok(),
            Some(StartOffset::Earliest)
        );
        assert_eq!(
            parse_start(None, None, true).ok(),
            Some(StartOffset::Committed)
        );
        assert_eq!(
            parse_start(Some("latest"), None, true).ok(),
            Some(StartOffset::Latest)
        );
        assert_eq!(
            parse_start(Some("42"), None, false).ok(),
            Some(StartOffset::Offset(42))
        );
        assert!(parse_start(Some("-1"), None, false).is_err());
        assert!(parse_start(Some("soon"), None, false).is_err());
        assert_eq!(
            parse_start(None, Some("1970-01-01T00:00:01Z"), false).ok(),
            Some(StartOffset::Timestamp(1000))
        );
        assert!(parse_start(None, Some("yesterday"), false).is_err());
    }

    #[test]
    fn json_lines_have_the_contract_keys() {
        let r = ConsumerRecord {
            topic: std::sync::Arc::from("t"),
            partition: 0,
            offset: 7,
            timestamp: 1,
            key: None,
            value: Some(bytes::Bytes::from_static(b"hi\xff")),
            headers: vec![("h".into(), Some(bytes::Bytes::from_static(b"v")))],
        };
        let mut out = Vec::new();
        write_record(&mut out, &r, RecordFormat::Json).expect("write");
        let v: serde_json::Value = serde_json::from_slice(&out).expect("json");
        assert_eq!(v["partition"], 0);
        assert_eq!(v["offset"], 7);
        assert_eq!(v["timestamp"], 1);
        assert!(v["key"].is_null());
        assert_eq!(v["value"], "hi\u{fffd}");
        assert_eq!(v["headers"]["h"], "v");
        let mut out = Vec::new();
        write_record(&mut out, &r, RecordFormat::Value).expect("write");
        assert_eq!(out, b"hi\xff\n");
    }
}
