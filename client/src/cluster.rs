//! The client's view of the cluster: a connection pool plus a metadata
//! cache (brokers, topics, partition leaders) and the retry loops that
//! route a request to any broker or to a partition's leader.
//!
//! Metadata is refreshed on demand (unknown topic, `NOT_LEADER`,
//! connection errors); concurrent refreshes collapse into one.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, RwLock};

use strata_proto::v1::{
    ErrorCode, ListOffsetsRequest, ListOffsetsResponse, MetadataRequest, MetadataResponse,
    OffsetSpec,
};

use crate::config::ClientConfig;
use crate::conn::{Pool, with_deadline};
use crate::error::{ClientError, Result, from_error_info, is_error};

/// Partitions of one topic with their leaders (broker ids, 0 = none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicInfo {
    pub name: Arc<str>,
    pub leaders: Vec<u64>,
}

impl TopicInfo {
    pub fn partitions(&self) -> u32 {
        self.leaders.len() as u32
    }
}

#[derive(Debug, Default)]
struct Snapshot {
    brokers: HashMap<u64, String>,
    topics: HashMap<String, Arc<TopicInfo>>,
    /// Topics the last refresh reported as failed (e.g. unknown).
    errors: HashMap<String, ClientError>,
    /// The address that answered the last metadata request.
    last_good: Option<String>,
    controller: u64,
    /// Brokers (normalized addresses) that left a hedged request waiting
    /// or refused a connection, and when: asked last until they answer
    /// again or `SLOW_FOR` passes.
    slow: HashMap<String, std::time::Instant>,
}

/// Shared state behind producers, consumers and admins.
#[derive(Debug)]
pub struct Cluster {
    pub pool: Pool,
    cfg: Arc<ClientConfig>,
    snap: RwLock<Snapshot>,
    /// Generation of the snapshot; guards collapsed refreshes.
    refresh: tokio::sync::Mutex<u64>,
    generation: Mutex<u64>,
    /// Metadata rounds asked so far (rotates the first broker asked).
    rounds: std::sync::atomic::AtomicU64,
}

/// How long a round of hedged requests waits for answers once every
/// candidate was asked.
const HEDGE_ROUND: std::time::Duration = std::time::Duration::from_secs(1);
/// A hedged request unanswered this long is also sent to the next broker.
const HEDGE_AFTER: std::time::Duration = std::time::Duration::from_millis(200);
/// How long a broker that did not answer in time is asked last.
const SLOW_FOR: std::time::Duration = std::time::Duration::from_secs(10);

impl Cluster {
    pub fn new(cfg: ClientConfig) -> Result<Arc<Self>> {
        if cfg.bootstrap.is_empty() {
            return Err(ClientError::InvalidArgument(
                "no bootstrap broker given".into(),
            ));
        }
        let cfg = Arc::new(cfg);
        let pool = Pool::new(Arc::clone(&cfg));
        for b in &cfg.bootstrap {
            pool.channel(b)?;
        }
        Ok(Arc::new(Self {
            pool,
            cfg,
            snap: RwLock::new(Snapshot::default()),
            refresh: tokio::sync::Mutex::new(0),
            generation: Mutex::new(0),
            rounds: std::sync::atomic::AtomicU64::new(0),
        }))
    }

    pub fn config(&self) -> &ClientConfig {
        &self.cfg
    }

    fn read<R>(&self, f: impl FnOnce(&Snapshot) -> R) -> R {
        match self.snap.read() {
            Ok(s) => f(&s),
            Err(p) => f(&p.into_inner()),
        }
    }

    fn write<R>(&self, f: impl FnOnce(&mut Snapshot) -> R) -> R {
        match self.snap.write() {
            Ok(mut s) => f(&mut s),
            Err(p) => f(&mut p.into_inner()),
        }
    }

    fn current_generation(&self) -> u64 {
        self.generation.lock().map(|g| *g).unwrap_or(0)
    }

    /// Addresses to try for a cluster-wide request, best first.
    pub fn candidates(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        self.read(|s| {
            if let Some(a) = s.brokers.get(&s.controller) {
                out.push(a.clone());
            }
            if let Some(a) = &s.last_good {
                out.push(a.clone());
            }
        });
        out.extend(self.cfg.bootstrap.iter().cloned());
        self.read(|s| out.extend(s.brokers.values().cloned()));
        let mut seen = std::collections::HashSet::new();
        out.retain(|a| seen.insert(crate::conn::normalize_addr(a, false)));
        // Brokers that lately failed to answer go last (stable order).
        let slow: Vec<bool> = out.iter().map(|a| self.is_slow(a)).collect();
        let (mut fast, slow): (Vec<_>, Vec<_>) =
            out.into_iter().zip(slow).partition(|(_, slow)| !slow);
        fast.extend(slow);
        fast.into_iter().map(|(a, _)| a).collect()
    }

    fn is_slow(&self, addr: &str) -> bool {
        let key = crate::conn::normalize_addr(addr, false);
        self.read(|s| s.slow.get(&key).is_some_and(|t| t.elapsed() < SLOW_FOR))
    }

    /// Records that `addr` left a request waiting (`true`) or answered.
    fn mark_slow(&self, addr: &str, slow: bool) {
        let key = crate::conn::normalize_addr(addr, false);
        if slow {
            self.write(|s| s.slow.insert(key, std::time::Instant::now()));
        } else if self.read(|s| s.slow.contains_key(&key)) {
            self.write(|s| s.slow.remove(&key));
        }
    }

    /// Cached topic info without any request.
    pub fn cached_topic(&self, topic: &str) -> Option<Arc<TopicInfo>> {
        self.read(|s| s.topics.get(topic).cloned())
    }

    /// The topic's partitions, asking the cluster when not cached.
    pub async fn topic(&self, topic: &str) -> Result<Arc<TopicInfo>> {
        if let Some(t) = self.cached_topic(topic) {
            return Ok(t);
        }
        self.refresh(&[topic.to_owned()]).await?;
        if let Some(t) = self.cached_topic(topic) {
            return Ok(t);
        }
        Err(self
            .read(|s| s.errors.get(topic).cloned())
            .unwrap_or_else(|| {
                ClientError::broker(
                    ErrorCode::UnknownTopic,
                    format!("topic '{topic}' does not exist"),
                )
            }))
    }

    /// Address of a partition's leader from the cache (None = unknown).
    pub fn leader_addr(&self, topic: &str, partition: u32) -> Option<String> {
        self.read(|s| {
            let t = s.topics.get(topic)?;
            let leader = *t.leaders.get(partition as usize)?;
            if leader == 0 {
                return None;
            }
            s.brokers
                .get(&leader)
                .filter(|a| !a.is_empty())
                .cloned()
                .or_else(|| s.last_good.clone())
        })
    }

    /// Records a leader learned from a `NOT_LEADER` error.
    pub fn set_leader(&self, topic: &str, partition: u32, id: u64, addr: &str) {
        self.write(|s| {
            if !addr.is_empty() {
                s.brokers.insert(id, addr.to_owned());
            }
            if let Some(t) = s.topics.get_mut(topic)
                && (partition as usize) < t.leaders.len()
            {
                let mut t2 = (**t).clone();
                t2.leaders[partition as usize] = id;
                *t = Arc::new(t2);
            }
        });
    }

    /// Refreshes the metadata of `topics` plus every cached topic. Callers
    /// arriving while a refresh runs wait for it instead of starting another.
    pub async fn refresh(&self, topics: &[String]) -> Result<()> {
        let seen = self.current_generation();
        let mut guard = self.refresh.lock().await;
        if *guard != seen
            && topics
                .iter()
                .all(|t| self.read(|s| s.topics.contains_key(t) || s.errors.contains_key(t)))
        {
            // Someone refreshed while we waited; their answer is fresh enough.
            return Ok(());
        }
        let mut wanted: Vec<String> = topics.to_vec();
        self.read(|s| wanted.extend(s.topics.keys().cloned()));
        wanted.sort();
        wanted.dedup();
        let resp = self.raw_metadata(wanted).await?;
        self.apply(&resp);
        *guard += 1;
        if let Ok(mut g) = self.generation.lock() {
            *g = *guard;
        }
        Ok(())
    }

    /// One Metadata request (with retries), without updating the cache;
    /// hedged (see [`any_hedged`](Self::any_hedged)).
    pub async fn raw_metadata(&self, topics: Vec<String>) -> Result<MetadataResponse> {
        let (addr, resp) = self
            .any_hedged(|addr| {
                let topics = topics.clone();
                async move {
                    let mut c = self.pool.admin(&addr)?;
                    let r = with_deadline(
                        &self.cfg,
                        std::time::Duration::ZERO,
                        c.metadata(MetadataRequest { topics }),
                    )
                    .await?;
                    Ok((addr, r))
                }
            })
            .await?;
        self.write(|s| s.last_good = Some(addr));
        Ok(resp)
    }

    /// As [`any`](Self::any) for requests that may safely reach several
    /// brokers (reads, id allocation): a broker that does not answer within
    /// `HEDGE_AFTER` (a paused or cut-off one) does not hold the answer up;
    /// the next candidate is asked meanwhile and the first answer wins.
    /// Each round starts one candidate further down the list, so that a
    /// broker whose view is stale does not answer every time.
    pub async fn any_hedged<T, F, Fut>(&self, f: F) -> Result<T>
    where
        F: Fn(String) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        use futures::StreamExt;
        let mut attempt = 0u32;
        loop {
            let mut cands = self.candidates();
            let round = self
                .rounds
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            // Rotate among the brokers that answer; slow ones stay last.
            let n = cands.iter().take_while(|a| !self.is_slow(a)).count();
            if n > 0 {
                cands[..n].rotate_left(round as usize % n);
            }
            let mut next = cands.into_iter();
            let ask = |addr: String| {
                let fut = f(addr.clone());
                async move { (fut.await.map_err(|e| e.at(&addr)), addr) }
            };
            let mut running = futures::stream::FuturesUnordered::new();
            // Addresses asked and not answered yet.
            let mut pending: Vec<String> = Vec::new();
            let mut last = ClientError::Connection("no broker address".into());
            if let Some(a) = next.next() {
                pending.push(a.clone());
                running.push(ask(a));
            }
            // Once every candidate was asked, requests still unanswered
            // get `HEDGE_ROUND` more before a new round asks everyone
            // again (they may all wait on one stopped broker).
            let mut exhausted_at: Option<tokio::time::Instant> = None;
            while !running.is_empty() {
                let wait = match exhausted_at {
                    Some(t) => {
                        (t + HEDGE_ROUND).saturating_duration_since(tokio::time::Instant::now())
                    }
                    None => HEDGE_AFTER,
                };
                tokio::select! {
                    Some((r, addr)) = running.next() => {
                        pending.retain(|a| *a != addr);
                        let refused = matches!(r, Err(ClientError::Connection(_)));
                        self.mark_slow(&addr, refused);
                        match r {
                            Ok(v) => return Ok(v),
                            Err(e) if refused || e.is_retriable() => {
                                last = e;
                                match next.next() {
                                    Some(a) => {
                                        pending.push(a.clone());
                                        running.push(ask(a));
                                    }
                                    // The rest are stalled: next round.
                                    None => break,
                                }
                            }
                            Err(e) => return Err(e),
                        }
                    },
                    () = tokio::time::sleep(wait) => {
                        // Whoever has not answered yet is asked last from
                        // now on (a paused or cut-off broker).
                        for a in &pending {
                            self.mark_slow(a, true);
                        }
                        match next.next() {
                            Some(a) => {
                                pending.push(a.clone());
                                running.push(ask(a));
                            }
                            None if exhausted_at.is_some() => {
                                last = ClientError::Timeout;
                                break;
                            }
                            None => exhausted_at = Some(tokio::time::Instant::now()),
                        }
                    }
                }
            }
            if attempt >= self.cfg.retries {
                return Err(last);
            }
            tokio::time::sleep(self.cfg.backoff(attempt)).await;
            attempt += 1;
        }
    }

    fn apply(&self, resp: &MetadataResponse) {
        self.write(|s| {
            s.controller = resp.controller_id;
            for b in &resp.brokers {
                s.brokers.insert(b.id, b.addr.clone());
            }
            for t in &resp.topics {
                if let Some(info) = t.error.as_ref().filter(|i| is_error(Some(i))) {
                    s.topics.remove(&t.name);
                    s.errors.insert(t.name.clone(), from_error_info(info));
                    continue;
                }
                s.errors.remove(&t.name);
                let mut leaders = vec![0u64; t.partitions.len()];
                for p in &t.partitions {
                    if let Some(slot) = leaders.get_mut(p.partition as usize) {
                        *slot = p.leader;
                    }
                }
                s.topics.insert(
                    t.name.clone(),
                    Arc::new(TopicInfo {
                        name: Arc::from(t.name.as_str()),
                        leaders,
                    }),
                );
            }
        });
    }

    /// Runs `f` against any broker, moving on to the next candidate on a
    /// connection failure and retrying retriable errors with backoff.
    pub async fn any<T, F, Fut>(&self, mut f: F) -> Result<T>
    where
        F: FnMut(String) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let mut attempt = 0u32;
        loop {
            let cands = self.candidates();
            let mut last = ClientError::Connection("no broker address".into());
            for addr in &cands {
                let r = f(addr.clone()).await.map_err(|e| e.at(addr));
                self.mark_slow(
                    addr,
                    matches!(r, Err(ClientError::Connection(_) | ClientError::Timeout)),
                );
                match r {
                    Ok(v) => return Ok(v),
                    // Unreachable, or not able to answer now (still
                    // catching up, shutting down, no controller leader in
                    // its view): another broker may answer.
                    Err(e) if matches!(e, ClientError::Connection(_)) || e.is_retriable() => {
                        last = e;
                    }
                    Err(e) => return Err(e),
                }
            }
            if attempt >= self.cfg.retries {
                return Err(last);
            }
            tokio::time::sleep(self.cfg.backoff(attempt)).await;
            attempt += 1;
        }
    }

    /// Runs `f` against the leader of a partition, refreshing metadata and
    /// retrying on `NOT_LEADER`, connection errors and other retriable codes.
    pub async fn leader<T, F, Fut>(&self, topic: &str, partition: u32, mut f: F) -> Result<T>
    where
        F: FnMut(String) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let mut attempt = 0u32;
        loop {
            let t = self.topic(topic).await?;
            if partition >= t.partitions() {
                return Err(ClientError::broker(
                    ErrorCode::UnknownPartition,
                    format!("topic '{topic}' has no partition {partition}"),
                ));
            }
            let err = match self.leader_addr(topic, partition) {
                Some(addr) => match f(addr.clone()).await {
                    Ok(v) => return Ok(v),
                    Err(e) => e.at(&addr),
                },
                None => ClientError::broker(
                    ErrorCode::NotLeader,
                    format!("no leader known for {topic}/{partition}"),
                ),
            };
            if !err.is_retriable() || attempt >= self.cfg.retries {
                return Err(err);
            }
            if let Some(l) = err.leader() {
                self.set_leader(topic, partition, l.id, &l.addr);
            } else if err.invalidates_metadata() {
                tokio::time::sleep(self.cfg.backoff(attempt)).await;
                // A failed refresh is retried by the next attempt.
                let _ = self.refresh(&[topic.to_owned()]).await;
                attempt += 1;
                continue;
            }
            tokio::time::sleep(self.cfg.backoff(attempt)).await;
            attempt += 1;
        }
    }

    /// ListOffsets on the partition's leader.
    pub async fn list_offsets(
        &self,
        topic: &str,
        partition: u32,
        spec: OffsetSpec,
        timestamp: i64,
    ) -> Result<ListOffsetsResponse> {
        self.leader(topic, partition, |addr| async move {
            let mut c = self.pool.broker(&addr)?;
            let req = ListOffsetsRequest {
                topic: topic.to_owned(),
                partition,
                spec: spec as i32,
                timestamp,
            };
            with_deadline(&self.cfg, std::time::Duration::ZERO, c.list_offsets(req)).await
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn brokers_that_left_a_request_waiting_are_asked_last() {
        let cfg = ClientConfig::new(["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"]);
        let c = Cluster::new(cfg).expect("cluster");
        assert_eq!(c.candidates()[0], "127.0.0.1:1");
        c.mark_slow("127.0.0.1:1", true);
        assert_eq!(
            c.candidates(),
            ["127.0.0.1:2", "127.0.0.1:3", "127.0.0.1:1"],
            "a slow broker goes last"
        );
        c.mark_slow("http://127.0.0.1:1", false);
        assert_eq!(c.candidates()[0], "127.0.0.1:1", "answering clears it");
    }

    #[tokio::test]
    async fn a_stopped_broker_does_not_hold_up_later_requests() {
        // The first broker never answers (paused or cut off).
        let addr = "127.0.0.1:8".to_string();
        let c =
            Cluster::new(ClientConfig::new([addr.clone(), "127.0.0.1:9".into()])).expect("cluster");
        let asked = std::sync::Mutex::new(Vec::new());
        let r: Result<()> = c
            .any_hedged(|a| {
                asked.lock().expect("lock").push(a.clone());
                let silent = a == addr;
                async move {
                    if silent {
                        std::future::pending::<()>().await;
                    }
                    Ok(())
                }
            })
            .await;
        assert!(r.is_ok());
        assert_eq!(
            c.candidates().last(),
            Some(&addr),
            "the silent one is now last"
        );
        asked.lock().expect("lock").clear();
        let _: Result<()> = c
            .any_hedged(|a| {
                asked.lock().expect("lock").push(a);
                async { Ok(()) }
            })
            .await;
        assert_eq!(*asked.lock().expect("lock"), ["127.0.0.1:9"]);
    }
}
