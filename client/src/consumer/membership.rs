//! Group membership through the consumer protocol: a background task
//! heartbeats to the group's coordinator with the subscription and the
//! partitions the consumer holds, and turns each answer into changes the
//! consumer applies on its next poll:
//! - partitions taken away are revoked: the consumer stops reading them
//!   and hands back their positions, the task commits those (as the member,
//!   which still owns them) and only then reports them released;
//! - partitions given are assigned at their committed offset (else as
//!   `auto_offset_reset` says), resolved by the task before the consumer
//!   sees them;
//! - when the member is fenced (its session ran out, it was replaced), its
//!   partitions are lost: dropped without a commit, and the task rejoins.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use strata_proto::group::{from_wire, to_wire};
use strata_proto::v1::{ConsumerGroupHeartbeatRequest, ErrorCode, OffsetSpec};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::OffsetReset;
use crate::admin::{offset_commit_as, offset_fetch};
use crate::cluster::Cluster;
use crate::conn::with_deadline;
use crate::error::{ClientError, Result};

/// A topic partition.
pub type TopicPartition = (String, u32);

/// What a subscribed consumer reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subscription {
    /// These topics (as they are created or grow, too).
    Topics(Vec<String>),
    /// Every topic whose whole name matches this regex, as topics come and go.
    Pattern(String),
}

/// A change of what a subscribed consumer reads, as the application sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AssignmentEvent {
    /// Given to this consumer; reading starts at the committed offset.
    Assigned(Vec<TopicPartition>),
    /// Given up after the positions were committed.
    Revoked(Vec<TopicPartition>),
    /// Taken away without a commit (this member was fenced).
    Lost(Vec<TopicPartition>),
}

/// What the task asks of the consumer.
#[derive(Debug)]
pub(super) enum Change {
    Assign(Vec<(TopicPartition, i64)>),
    /// Stop reading these and answer with their positions.
    Revoke(
        Vec<TopicPartition>,
        oneshot::Sender<Vec<(TopicPartition, i64)>>,
    ),
    Lose(Vec<TopicPartition>),
    /// Membership cannot go on (a bad subscription, no permission).
    Failed(ClientError),
}

/// How the member joins.
#[derive(Debug, Clone)]
pub(super) struct MemberConfig {
    pub group: String,
    pub subscription: Subscription,
    pub instance_id: Option<String>,
    pub session_timeout: Duration,
    pub rebalance_timeout: Duration,
    pub assignor: Option<String>,
    pub offset_reset: OffsetReset,
    pub commit_on_revoke: bool,
}

/// The consumer's end of the membership task.
#[derive(Debug)]
pub(super) struct Member {
    pub changes: mpsc::UnboundedReceiver<Change>,
    /// (member id, member epoch) to commit with.
    pub identity: Arc<Mutex<(String, i32)>>,
    leave: Option<oneshot::Sender<oneshot::Sender<()>>>,
    task: JoinHandle<()>,
}

impl Drop for Member {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Member {
    pub fn start(cluster: Arc<Cluster>, cfg: MemberConfig) -> Self {
        let (tx, changes) = mpsc::unbounded_channel();
        let identity = Arc::new(Mutex::new((String::new(), 0)));
        let (leave_tx, leave_rx) = oneshot::channel();
        let task = Task {
            cluster,
            cfg,
            member_id: String::new(),
            epoch: 0,
            owned: BTreeSet::new(),
            report_owned: false,
            changes: tx,
            identity: Arc::clone(&identity),
        };
        Self {
            changes,
            identity,
            leave: Some(leave_tx),
            task: tokio::spawn(task.run(leave_rx)),
        }
    }

    /// The member id and epoch to commit with.
    pub fn identity(&self) -> (String, i32) {
        self.identity
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Leaves the group (a static member leaves its place to its instance)
    /// and waits, bounded, for the coordinator to take it.
    pub async fn leave(mut self) {
        if let Some(tx) = self.leave.take() {
            let (done_tx, done_rx) = oneshot::channel();
            if tx.send(done_tx).is_ok() {
                let _ = tokio::time::timeout(Duration::from_secs(5), done_rx).await;
            }
        }
    }
}

struct Task {
    cluster: Arc<Cluster>,
    cfg: MemberConfig,
    member_id: String,
    epoch: i32,
    /// What the consumer holds (given, and not yet released).
    owned: BTreeSet<TopicPartition>,
    /// The next heartbeat reports `owned`.
    report_owned: bool,
    changes: mpsc::UnboundedSender<Change>,
    identity: Arc<Mutex<(String, i32)>>,
}

/// A revocation the consumer has not answered yet.
type Pending = (
    Vec<TopicPartition>,
    oneshot::Receiver<Vec<(TopicPartition, i64)>>,
);

impl Task {
    async fn run(mut self, mut leave: oneshot::Receiver<oneshot::Sender<()>>) {
        let mut pending: Option<Pending> = None;
        let mut wait = Duration::ZERO;
        loop {
            let wake = {
                let released = async {
                    match pending.as_mut() {
                        Some((_, rx)) => rx.await.ok(),
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    done = &mut leave => Wake::Leave(done.ok()),
                    positions = released => Wake::Released(positions.unwrap_or_default()),
                    () = tokio::time::sleep(wait) => Wake::Beat,
                }
            };
            match wake {
                Wake::Leave(done) => {
                    self.leave().await;
                    if let Some(done) = done {
                        let _ = done.send(());
                    }
                    return;
                }
                Wake::Released(positions) => {
                    let revoked = pending.take().map(|(v, _)| v).unwrap_or_default();
                    self.release(&revoked, positions).await;
                    wait = Duration::ZERO;
                    continue;
                }
                Wake::Beat => {}
            }
            wait = match self.heartbeat(&mut pending).await {
                Ok(interval) => interval,
                Err(e) if e.is_retriable() => Duration::from_millis(200),
                Err(e)
                    if matches!(
                        e.code(),
                        Some(ErrorCode::UnknownMemberId | ErrorCode::FencedMemberEpoch)
                    ) =>
                {
                    self.lose_all(&mut pending);
                    Duration::ZERO
                }
                Err(e) => {
                    let _ = self.changes.send(Change::Failed(e));
                    return;
                }
            };
        }
    }

    fn set_identity(&self) {
        *self.identity.lock().unwrap_or_else(|e| e.into_inner()) =
            (self.member_id.clone(), self.epoch);
    }

    /// Everything held is gone without a commit; the member joins again.
    fn lose_all(&mut self, pending: &mut Option<Pending>) {
        *pending = None;
        let lost: Vec<TopicPartition> = std::mem::take(&mut self.owned).into_iter().collect();
        if !lost.is_empty() {
            let _ = self.changes.send(Change::Lose(lost));
        }
        self.member_id.clear();
        self.epoch = 0;
        self.set_identity();
    }

    fn request(&self) -> ConsumerGroupHeartbeatRequest {
        let joining = self.epoch == 0;
        let (topics, regex) = match &self.cfg.subscription {
            Subscription::Topics(t) => (t.clone(), String::new()),
            Subscription::Pattern(p) => (Vec::new(), p.clone()),
        };
        ConsumerGroupHeartbeatRequest {
            group: self.cfg.group.clone(),
            member_id: self.member_id.clone(),
            member_epoch: self.epoch,
            instance_id: self.cfg.instance_id.clone().unwrap_or_default(),
            has_subscription: joining,
            subscribed_topics: if joining { topics } else { Vec::new() },
            subscribed_regex: if joining { regex } else { String::new() },
            assignor: self.cfg.assignor.clone().unwrap_or_default(),
            session_timeout_ms: self.cfg.session_timeout.as_millis() as u32,
            rebalance_timeout_ms: self.cfg.rebalance_timeout.as_millis() as u32,
            has_owned: self.report_owned || joining,
            owned: to_wire(&self.owned),
        }
    }

    async fn call(&self, req: ConsumerGroupHeartbeatRequest) -> Result<Answer> {
        let cluster = &self.cluster;
        let r = cluster
            .any(|addr| {
                let req = req.clone();
                async move {
                    let mut c = cluster.pool.groups(&addr)?;
                    with_deadline(
                        cluster.config(),
                        Duration::ZERO,
                        c.consumer_group_heartbeat(req),
                    )
                    .await
                }
            })
            .await?;
        Ok(Answer {
            member_id: r.member_id,
            member_epoch: r.member_epoch,
            interval: Duration::from_millis(u64::from(r.heartbeat_interval_ms.max(100))),
            assignment: from_wire(&r.assignment),
        })
    }

    /// One heartbeat, and what its answer asks of the consumer. Answers
    /// when to heartbeat next.
    async fn heartbeat(&mut self, pending: &mut Option<Pending>) -> Result<Duration> {
        let req = self.request();
        let reported = req.has_owned;
        let r = self.call(req).await?;
        if reported {
            self.report_owned = false;
        }
        self.member_id = r.member_id;
        self.epoch = r.member_epoch;
        self.set_identity();
        let target = r.assignment;
        if pending.is_none() {
            let revoked: Vec<TopicPartition> = self.owned.difference(&target).cloned().collect();
            if !revoked.is_empty() {
                let (tx, rx) = oneshot::channel();
                if self
                    .changes
                    .send(Change::Revoke(revoked.clone(), tx))
                    .is_err()
                {
                    return Ok(r.interval);
                }
                *pending = Some((revoked, rx));
            }
        }
        let added: Vec<TopicPartition> = target.difference(&self.owned).cloned().collect();
        if !added.is_empty() {
            let positions = self.positions(&added).await?;
            self.owned.extend(added);
            self.report_owned = true;
            let _ = self.changes.send(Change::Assign(positions));
            // Report the new holdings at once: partitions waiting on others
            // come sooner.
            return Ok(Duration::ZERO);
        }
        Ok(r.interval)
    }

    /// The committed offsets of `tps`, else where `auto_offset_reset` says.
    async fn positions(&self, tps: &[TopicPartition]) -> Result<Vec<(TopicPartition, i64)>> {
        let topics: Vec<String> = tps
            .iter()
            .map(|(t, _)| t.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let committed: BTreeMap<TopicPartition, i64> =
            offset_fetch(&self.cluster, &self.cfg.group, &topics)
                .await?
                .into_iter()
                .map(|o| ((o.topic, o.partition), o.offset))
                .collect();
        let mut out = Vec::with_capacity(tps.len());
        for tp in tps {
            let at = match committed.get(tp) {
                Some(o) => *o,
                None => {
                    let spec = match self.cfg.offset_reset {
                        OffsetReset::Latest => OffsetSpec::Latest,
                        OffsetReset::Earliest | OffsetReset::None => OffsetSpec::Earliest,
                    };
                    self.cluster
                        .list_offsets(&tp.0, tp.1, spec, 0)
                        .await?
                        .offset
                }
            };
            out.push((tp.clone(), at));
        }
        Ok(out)
    }

    /// The consumer stopped reading `revoked`: commit where it stood (as
    /// the member still holding them), then report them released.
    async fn release(&mut self, revoked: &[TopicPartition], positions: Vec<(TopicPartition, i64)>) {
        if self.cfg.commit_on_revoke && !positions.is_empty() {
            let offsets: Vec<(String, u32, i64)> =
                positions.into_iter().map(|((t, p), o)| (t, p, o)).collect();
            for attempt in 0..5 {
                match offset_commit_as(
                    &self.cluster,
                    &self.cfg.group,
                    &offsets,
                    (&self.member_id, self.epoch),
                )
                .await
                {
                    Ok(()) => break,
                    Err(e) if e.is_retriable() && attempt < 4 => {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    Err(e) => {
                        tracing::warn!(group = %self.cfg.group, error = %e,
                            "offsets of revoked partitions not committed");
                        break;
                    }
                }
            }
        }
        for tp in revoked {
            self.owned.remove(tp);
        }
        self.report_owned = true;
    }

    async fn leave(&mut self) {
        if self.member_id.is_empty() {
            return;
        }
        let epoch = if self.cfg.instance_id.is_some() {
            -2
        } else {
            -1
        };
        let req = ConsumerGroupHeartbeatRequest {
            group: self.cfg.group.clone(),
            member_id: self.member_id.clone(),
            member_epoch: epoch,
            instance_id: self.cfg.instance_id.clone().unwrap_or_default(),
            ..Default::default()
        };
        if let Err(e) = self.call(req).await {
            tracing::debug!(group = %self.cfg.group, error = %e, "leaving the group failed");
        }
    }
}

/// What woke the task.
enum Wake {
    Leave(Option<oneshot::Sender<()>>),
    Released(Vec<(TopicPartition, i64)>),
    Beat,
}

/// The parts of a heartbeat answer the task uses.
struct Answer {
    member_id: String,
    member_epoch: i32,
    interval: Duration,
    assignment: BTreeSet<TopicPartition>,
}
