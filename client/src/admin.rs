//! Cluster administration: topics, configs, records deletion, metadata,
//! offsets lookup, consumer groups, cluster status and membership, and
//! partition leadership. Requests go to the controller when known, else to
//! any reachable broker, with retries on retriable errors; requests about
//! one partition (records deletion, leadership transfer) go to its leader.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use strata_proto::v1::{
    Acl, AddBrokerRequest, AlterTopicConfigRequest, ClusterStatusRequest, ClusterStatusResponse,
    CreateAclsRequest, CreatePartitionsRequest, CreateTopicRequest, DeleteAclsRequest,
    DeleteGroupRequest, DeleteRecordsRequest, DeleteTopicRequest, DescribeGroupRequest,
    DescribeGroupResponse, DescribeTopicRequest, ListAclsRequest, ListGroupsRequest,
    ListOffsetsResponse, ListTopicsRequest, MetadataResponse, OffsetCommitRequest,
    OffsetFetchRequest, OffsetSpec, RemoveBrokerRequest, TopicDescription, TopicPartitionOffset,
    TopicSummary, TransferLeaderRequest, WhoAmIRequest, WhoAmIResponse,
};

use crate::cluster::Cluster;
use crate::config::ClientConfig;
use crate::conn::with_deadline;
use crate::error::{ClientError, Result};

/// Target of [`Admin::reset_group_offsets`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetTo {
    Earliest,
    Latest,
    Offset(i64),
}

/// Administrative client.
#[derive(Debug, Clone)]
pub struct Admin {
    cluster: Arc<Cluster>,
}

macro_rules! admin_call {
    ($self:ident, $method:ident, $req:expr) => {{
        let req = $req;
        $self
            .cluster
            .any(|addr| {
                let req = req.clone();
                let cluster = &$self.cluster;
                async move {
                    let mut c = cluster.pool.admin(&addr)?;
                    with_deadline(cluster.config(), Duration::ZERO, c.$method(req)).await
                }
            })
            .await
    }};
}

macro_rules! groups_call {
    ($cluster:expr, $method:ident, $req:expr) => {{
        let req = $req;
        let cluster: &Cluster = $cluster;
        cluster
            .any(|addr| {
                let req = req.clone();
                async move {
                    let mut c = cluster.pool.groups(&addr)?;
                    with_deadline(cluster.config(), Duration::ZERO, c.$method(req)).await
                }
            })
            .await
    }};
}

/// Broker ids start at 1 (0 means "none" on the wire).
fn check_broker_id(id: u64) -> Result<()> {
    if id == 0 {
        return Err(ClientError::InvalidArgument("broker ids start at 1".into()));
    }
    Ok(())
}

/// Commits `(topic, partition, next offset)` for `group`, as the member
/// `(id, epoch)` (empty id: a simple commit).
pub(crate) async fn offset_commit_as(
    cluster: &Cluster,
    group: &str,
    offsets: &[(String, u32, i64)],
    member: (&str, i32),
) -> Result<()> {
    let req = OffsetCommitRequest {
        group: group.to_owned(),
        member_id: member.0.to_owned(),
        member_epoch: member.1,
        offsets: offsets
            .iter()
            .map(|(t, p, o)| TopicPartitionOffset {
                topic: t.clone(),
                partition: *p,
                offset: *o,
                metadata: String::new(),
            })
            .collect(),
    };
    groups_call!(cluster, offset_commit, req)?;
    Ok(())
}

/// The committed offsets of `group` for `topics` (all when empty).
pub(crate) async fn offset_fetch(
    cluster: &Cluster,
    group: &str,
    topics: &[String],
) -> Result<Vec<TopicPartitionOffset>> {
    let req = OffsetFetchRequest {
        group: group.to_owned(),
        topics: topics.to_vec(),
    };
    Ok(groups_call!(cluster, offset_fetch, req)?.offsets)
}

impl Admin {
    /// An admin client; connects lazily.
    pub fn new(client: ClientConfig) -> Result<Self> {
        Ok(Self {
            cluster: Cluster::new(client)?,
        })
    }

    pub async fn create_topic(
        &self,
        name: &str,
        partitions: u32,
        replication_factor: u32,
        configs: HashMap<String, String>,
    ) -> Result<TopicDescription> {
        let req = CreateTopicRequest {
            name: name.to_owned(),
            partitions,
            replication_factor,
            configs,
        };
        let r = admin_call!(self, create_topic, req)?;
        r.topic
            .ok_or_else(|| ClientError::Corrupt("create answer without topic".into()))
    }

    pub async fn delete_topic(&self, name: &str) -> Result<()> {
        admin_call!(
            self,
            delete_topic,
            DeleteTopicRequest {
                name: name.to_owned()
            }
        )?;
        Ok(())
    }

    pub async fn list_topics(&self, include_internal: bool) -> Result<Vec<TopicSummary>> {
        let r = admin_call!(self, list_topics, ListTopicsRequest { include_internal })?;
        Ok(r.topics)
    }

    pub async fn describe_topic(&self, name: &str) -> Result<TopicDescription> {
        admin_call!(
            self,
            describe_topic,
            DescribeTopicRequest {
                name: name.to_owned()
            }
        )
    }

    /// Sets topic config overrides; an empty value removes an override.
    pub async fn alter_topic_config(
        &self,
        name: &str,
        set: HashMap<String, String>,
    ) -> Result<TopicDescription> {
        let req = AlterTopicConfigRequest {
            name: name.to_owned(),
            set,
        };
        let r = admin_call!(self, alter_topic_config, req)?;
        r.topic
            .ok_or_else(|| ClientError::Corrupt("alter answer without topic".into()))
    }

    /// Grows a topic to `count` partitions (more than it has).
    pub async fn create_partitions(&self, name: &str, count: u32) -> Result<TopicDescription> {
        let req = CreatePartitionsRequest {
            name: name.to_owned(),
            count,
        };
        let r = admin_call!(self, create_partitions, req)?;
        r.topic
            .ok_or_else(|| ClientError::Corrupt("create-partitions answer without topic".into()))
    }

    /// Moves the log start offset (-1 = the high watermark); returns it.
    pub async fn delete_records(&self, topic: &str, partition: u32, offset: i64) -> Result<i64> {
        let req = DeleteRecordsRequest {
            topic: topic.to_owned(),
            partition,
            offset,
        };
        let topic = topic.to_owned();
        let r = self
            .cluster
            .leader(&topic, partition, |addr| {
                let req = req.clone();
                async move {
                    let mut c = self.cluster.pool.admin(&addr)?;
                    with_deadline(self.cluster.config(), Duration::ZERO, c.delete_records(req))
                        .await
                }
            })
            .await?;
        Ok(r.log_start_offset)
    }

    /// Cluster metadata for `topics` (every topic when empty).
    pub async fn metadata(&self, topics: &[String]) -> Result<MetadataResponse> {
        self.cluster.raw_metadata(topics.to_vec()).await
    }

    /// Brokers (liveness, controller-quorum membership, led partitions),
    /// the controller leader and partition health, as the answering broker
    /// sees the cluster after asking its peers.
    pub async fn cluster_status(&self) -> Result<ClusterStatusResponse> {
        admin_call!(self, cluster_status, ClusterStatusRequest {})
    }

    /// Adds broker `id` (reachable by other brokers at `peer_addr`,
    /// `host:port`) to the cluster; it joins the controller group as a
    /// learner and can then host replicas.
    pub async fn add_broker(&self, id: u64, peer_addr: &str) -> Result<()> {
        check_broker_id(id)?;
        let peer_addr = peer_addr.trim();
        if peer_addr.is_empty() {
            return Err(ClientError::InvalidArgument(
                "empty broker peer address".into(),
            ));
        }
        let req = AddBrokerRequest {
            id,
            peer_addr: peer_addr.to_owned(),
        };
        admin_call!(self, add_broker, req)?;
        Ok(())
    }

    /// Removes broker `id` from the cluster; it must host no replicas any
    /// more (`UNKNOWN_BROKER` when the cluster has no such broker).
    pub async fn remove_broker(&self, id: u64) -> Result<()> {
        check_broker_id(id)?;
        admin_call!(self, remove_broker, RemoveBrokerRequest { id })?;
        Ok(())
    }

    /// Adds ACLs (stored by the controller; authorization turns on with
    /// the first one unless the brokers run `--authorization off`).
    pub async fn create_acls(&self, acls: Vec<Acl>) -> Result<()> {
        admin_call!(self, create_acls, CreateAclsRequest { acls: acls.clone() })?;
        Ok(())
    }

    /// ACLs, all or those of one principal.
    pub async fn list_acls(&self, principal: Option<&str>) -> Result<Vec<Acl>> {
        let r = admin_call!(
            self,
            list_acls,
            ListAclsRequest {
                principal: principal.unwrap_or_default().to_owned()
            }
        )?;
        Ok(r.acls)
    }

    /// Removes exactly these ACLs; answers how many existed.
    pub async fn delete_acls(&self, acls: Vec<Acl>) -> Result<u32> {
        let r = admin_call!(self, delete_acls, DeleteAclsRequest { acls: acls.clone() })?;
        Ok(r.deleted)
    }

    /// Creates a SASL user of the Kafka listener, or sets a new password
    /// (SCRAM-SHA-256 and -512 credentials; `iterations` 0 = 4096).
    pub async fn upsert_user(&self, name: &str, password: &str, iterations: u32) -> Result<()> {
        admin_call!(
            self,
            upsert_user,
            strata_proto::v1::UpsertUserRequest {
                name: name.to_owned(),
                password: password.to_owned(),
                iterations,
            }
        )?;
        Ok(())
    }

    /// Deletes a SASL user.
    pub async fn delete_user(&self, name: &str) -> Result<()> {
        admin_call!(
            self,
            delete_user,
            strata_proto::v1::DeleteUserRequest {
                name: name.to_owned()
            }
        )?;
        Ok(())
    }

    /// SASL users and their mechanisms.
    pub async fn list_users(&self) -> Result<Vec<strata_proto::v1::UserInfo>> {
        let r = admin_call!(self, list_users, strata_proto::v1::ListUsersRequest {})?;
        Ok(r.users)
    }

    /// The principal the brokers see for this client, and whether ACLs
    /// are enforced.
    pub async fn who_am_i(&self) -> Result<WhoAmIResponse> {
        admin_call!(self, who_am_i, WhoAmIRequest {})
    }

    /// Moves the leadership of `topic`/`partition` to broker `to`, which
    /// must be an in-sync replica; returns the leader the broker reports
    /// afterwards. The request goes to the partition's current leader.
    pub async fn transfer_leader(&self, topic: &str, partition: u32, to: u64) -> Result<u64> {
        check_broker_id(to)?;
        let req = TransferLeaderRequest {
            topic: topic.to_owned(),
            partition,
            to,
        };
        let r = self
            .cluster
            .leader(topic, partition, |addr| {
                let req = req.clone();
                async move {
                    let mut c = self.cluster.pool.admin(&addr)?;
                    with_deadline(
                        self.cluster.config(),
                        Duration::ZERO,
                        c.transfer_leader(req),
                    )
                    .await
                }
            })
            .await?;
        if r.leader != 0 {
            self.cluster.set_leader(topic, partition, r.leader, "");
        }
        Ok(r.leader)
    }

    pub async fn list_offsets(
        &self,
        topic: &str,
        partition: u32,
        spec: OffsetSpec,
        timestamp: i64,
    ) -> Result<ListOffsetsResponse> {
        self.cluster
            .list_offsets(topic, partition, spec, timestamp)
            .await
    }

    pub async fn list_groups(&self) -> Result<Vec<String>> {
        Ok(groups_call!(&self.cluster, list_groups, ListGroupsRequest {})?.groups)
    }

    /// Every group with its state, member count and protocol.
    pub async fn list_group_listings(&self) -> Result<Vec<crate::GroupListing>> {
        Ok(groups_call!(&self.cluster, list_groups, ListGroupsRequest {})?.listings)
    }

    pub async fn describe_group(&self, group: &str) -> Result<DescribeGroupResponse> {
        groups_call!(
            &self.cluster,
            describe_group,
            DescribeGroupRequest {
                group: group.to_owned()
            }
        )
    }

    pub async fn delete_group(&self, group: &str) -> Result<()> {
        groups_call!(
            &self.cluster,
            delete_group,
            DeleteGroupRequest {
                group: group.to_owned()
            }
        )?;
        Ok(())
    }

    /// The committed offsets of a group (for `topics`, or all when empty).
    pub async fn group_offsets(
        &self,
        group: &str,
        topics: &[String],
    ) -> Result<Vec<TopicPartitionOffset>> {
        offset_fetch(&self.cluster, group, topics).await
    }

    /// Commits explicit `(topic, partition, next offset)` for a group.
    pub async fn commit_group_offsets(
        &self,
        group: &str,
        offsets: &[(String, u32, i64)],
    ) -> Result<()> {
        offset_commit_as(&self.cluster, group, offsets, ("", 0)).await
    }

    /// Sets the group's committed offset of every partition of `topic`;
    /// returns `(partition, offset)` as committed. Offsets are clamped to
    /// each partition's `[log start, high watermark]`.
    pub async fn reset_group_offsets(
        &self,
        group: &str,
        topic: &str,
        to: ResetTo,
    ) -> Result<Vec<(u32, i64)>> {
        if let ResetTo::Offset(o) = to
            && o < 0
        {
            return Err(ClientError::InvalidArgument(format!("negative offset {o}")));
        }
        let n = self.cluster.topic(topic).await?.partitions();
        let mut out = Vec::with_capacity(n as usize);
        for p in 0..n {
            let r = self
                .cluster
                .list_offsets(topic, p, OffsetSpec::Latest, 0)
                .await?;
            let off = match to {
                ResetTo::Earliest => r.log_start_offset,
                ResetTo::Latest => r.high_watermark,
                ResetTo::Offset(o) => o.clamp(r.log_start_offset, r.high_watermark.max(0)),
            };
            out.push((p, off));
        }
        let offsets: Vec<(String, u32, i64)> =
            out.iter().map(|&(p, o)| (topic.to_owned(), p, o)).collect();
        offset_commit_as(&self.cluster, group, &offsets, ("", 0)).await?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests;
