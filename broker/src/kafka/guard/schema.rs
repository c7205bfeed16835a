//! The request schema table: the wire layout of every request body the
//! guard accepts, per version.
//!
//! Transcribed from the generated decoders of kafka-protocol 0.18
//! (`src/messages/<name>_request.rs`): one `const` per request message (and
//! one per nested struct), each field with the versions it is on the wire
//! (`since`/`until`, inclusive), whether it may be null, and the message's
//! version range and first flexible version. In flexible versions strings,
//! bytes and arrays use their compact encodings and every struct ends with a
//! tagged-field section; that is the rule of the Kafka protocol and the
//! crate's decoders follow it field by field, so the table stores the base
//! type only. Known tagged fields (only Fetch has any) are listed with their
//! tag; every other tag is skipped by its size.

/// `flexible` of a message that has no flexible version.
pub(super) const NEVER: i16 = i16::MAX;

/// The wire type of a field.
#[derive(Debug, Clone, Copy)]
pub(super) enum Ty {
    Bool,
    Int8,
    Int16,
    Int32,
    Int64,
    Uuid,
    /// STRING (i16 length, -1 null) or, flexible, COMPACT_STRING.
    Str,
    /// BYTES (i32 length, -1 null) or, flexible, COMPACT_BYTES.
    Bytes,
    /// ARRAY (i32 count, -1 null) or, flexible, COMPACT_ARRAY, of a scalar
    /// or string type.
    Array(&'static Ty),
    /// An array (as [`Ty::Array`]) of a nested struct.
    Structs(&'static Struct),
    /// A nested struct (a known tagged field's content).
    Struct(&'static Struct),
}

/// An array of `elem`.
const fn array(elem: &'static Ty) -> Ty {
    Ty::Array(elem)
}

/// An array of structs.
const fn structs(elem: &'static Struct) -> Ty {
    Ty::Structs(elem)
}

const BOOL: Ty = Ty::Bool;
const INT8: Ty = Ty::Int8;
const INT16: Ty = Ty::Int16;
const INT32: Ty = Ty::Int32;
const INT64: Ty = Ty::Int64;
const UUID: Ty = Ty::Uuid;
const STRING: Ty = Ty::Str;
const BYTES: Ty = Ty::Bytes;

/// One field of a struct, on the wire in versions `since..=until`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Field {
    pub(super) name: &'static str,
    pub(super) ty: Ty,
    pub(super) since: i16,
    pub(super) until: i16,
    pub(super) nullable: bool,
}

impl Field {
    const fn since(mut self, version: i16) -> Self {
        self.since = version;
        self
    }

    const fn until(mut self, version: i16) -> Self {
        self.until = version;
        self
    }

    const fn nullable(mut self) -> Self {
        self.nullable = true;
        self
    }

    /// Whether the field is on the wire in `version`.
    pub(super) fn present(&self, version: i16) -> bool {
        self.since <= version && version <= self.until
    }
}

/// A field in every version of its struct, not nullable.
const fn field(name: &'static str, ty: Ty) -> Field {
    Field {
        name,
        ty,
        since: 0,
        until: i16::MAX,
        nullable: false,
    }
}

/// A known tagged field: its content is decoded by type, not skipped.
#[derive(Debug, Clone, Copy)]
pub(super) struct Tagged {
    pub(super) tag: u32,
    pub(super) field: Field,
}

impl Tagged {
    const fn since(mut self, version: i16) -> Self {
        self.field = self.field.since(version);
        self
    }

    const fn nullable(mut self) -> Self {
        self.field = self.field.nullable();
        self
    }
}

/// A known tagged field in every flexible version of its struct.
const fn tagged(tag: u32, name: &'static str, ty: Ty) -> Tagged {
    Tagged {
        tag,
        field: field(name, ty),
    }
}

/// The fields of a struct, in wire order, and its known tagged fields.
#[derive(Debug)]
pub(super) struct Struct {
    pub(super) fields: &'static [Field],
    pub(super) tagged: &'static [Tagged],
}

/// A request message: its api key, versions and body.
#[derive(Debug)]
pub(super) struct Api {
    pub(super) key: i16,
    pub(super) name: &'static str,
    pub(super) min: i16,
    pub(super) max: i16,
    /// The first flexible version (request header v2, compact encodings,
    /// tagged fields), or [`NEVER`].
    pub(super) flexible: i16,
    pub(super) body: Struct,
}

// ---- Produce (0) ----

/// Produce request (api key 0), versions 3-13, flexible from v9.
pub(super) const PRODUCE: Api = Api {
    key: 0,
    name: "Produce",
    min: 3,
    max: 13,
    flexible: 9,
    body: Struct {
        fields: &[
            field("transactional_id", STRING).nullable(),
            field("acks", INT16),
            field("timeout_ms", INT32),
            field("topic_data", structs(&PRODUCE_TOPIC_PRODUCE_DATA)),
        ],
        tagged: &[],
    },
};

/// Produce: `PartitionProduceData`.
const PRODUCE_PARTITION_PRODUCE_DATA: Struct = Struct {
    fields: &[field("index", INT32), field("records", BYTES).nullable()],
    tagged: &[],
};

/// Produce: `TopicProduceData`.
const PRODUCE_TOPIC_PRODUCE_DATA: Struct = Struct {
    fields: &[
        field("name", STRING).until(12),
        field("topic_id", UUID).since(13),
        field("partition_data", structs(&PRODUCE_PARTITION_PRODUCE_DATA)),
    ],
    tagged: &[],
};

// ---- Fetch (1) ----

/// Fetch request (api key 1), versions 4-18, flexible from v12.
pub(super) const FETCH: Api = Api {
    key: 1,
    name: "Fetch",
    min: 4,
    max: 18,
    flexible: 12,
    body: Struct {
        fields: &[
            field("replica_id", INT32).until(14),
            field("max_wait_ms", INT32),
            field("min_bytes", INT32),
            field("max_bytes", INT32),
            field("isolation_level", INT8),
            field("session_id", INT32).since(7),
            field("session_epoch", INT32).since(7),
            field("topics", structs(&FETCH_TOPIC)),
            field("forgotten_topics_data", structs(&FETCH_FORGOTTEN_TOPIC)).since(7),
            field("rack_id", STRING).since(11),
        ],
        tagged: &[
            tagged(0, "cluster_id", STRING).nullable(),
            tagged(1, "replica_state", Ty::Struct(&FETCH_REPLICA_STATE)).since(15),
        ],
    },
};

/// Fetch: `FetchPartition`.
const FETCH_PARTITION: Struct = Struct {
    fields: &[
        field("partition", INT32),
        field("current_leader_epoch", INT32).since(9),
        field("fetch_offset", INT64),
        field("last_fetched_epoch", INT32).since(12),
        field("log_start_offset", INT64).since(5),
        field("partition_max_bytes", INT32),
    ],
    tagged: &[
        tagged(0, "replica_directory_id", UUID).since(17),
        tagged(1, "high_watermark", INT64).since(18),
    ],
};

/// Fetch: `FetchTopic`.
const FETCH_TOPIC: Struct = Struct {
    fields: &[
        field("topic", STRING).until(12),
        field("topic_id", UUID).since(13),
        field("partitions", structs(&FETCH_PARTITION)),
    ],
    tagged: &[],
};

/// Fetch: `ForgottenTopic`.
const FETCH_FORGOTTEN_TOPIC: Struct = Struct {
    fields: &[
        field("topic", STRING).since(7).until(12),
        field("topic_id", UUID).since(13),
        field("partitions", array(&INT32)).since(7),
    ],
    tagged: &[],
};

/// Fetch: `ReplicaState`.
const FETCH_REPLICA_STATE: Struct = Struct {
    fields: &[
        field("replica_id", INT32).since(15),
        field("replica_epoch", INT64).since(15),
    ],
    tagged: &[],
};

// ---- ListOffsets (2) ----

/// ListOffsets request (api key 2), versions 1-10, flexible from v6.
pub(super) const LIST_OFFSETS: Api = Api {
    key: 2,
    name: "ListOffsets",
    min: 1,
    max: 10,
    flexible: 6,
    body: Struct {
        fields: &[
            field("replica_id", INT32),
            field("isolation_level", INT8).since(2),
            field("topics", structs(&LIST_OFFSETS_TOPIC)),
            field("timeout_ms", INT32).since(10),
        ],
        tagged: &[],
    },
};

/// ListOffsets: `ListOffsetsPartition`.
const LIST_OFFSETS_PARTITION: Struct = Struct {
    fields: &[
        field("partition_index", INT32),
        field("current_leader_epoch", INT32).since(4),
        field("timestamp", INT64),
    ],
    tagged: &[],
};

/// ListOffsets: `ListOffsetsTopic`.
const LIST_OFFSETS_TOPIC: Struct = Struct {
    fields: &[
        field("name", STRING),
        field("partitions", structs(&LIST_OFFSETS_PARTITION)),
    ],
    tagged: &[],
};

// ---- Metadata (3) ----

/// Metadata request (api key 3), versions 0-13, flexible from v9.
pub(super) const METADATA: Api = Api {
    key: 3,
    name: "Metadata",
    min: 0,
    max: 13,
    flexible: 9,
    body: Struct {
        fields: &[
            field("topics", structs(&METADATA_TOPIC)).nullable(),
            field("allow_auto_topic_creation", BOOL).since(4),
            field("include_cluster_authorized_operations", BOOL)
                .since(8)
                .until(10),
            field("include_topic_authorized_operations", BOOL).since(8),
        ],
        tagged: &[],
    },
};

/// Metadata: `MetadataRequestTopic`.
const METADATA_TOPIC: Struct = Struct {
    fields: &[
        field("topic_id", UUID).since(10),
        field("name", STRING).nullable(),
    ],
    tagged: &[],
};

// ---- OffsetCommit (8) ----

/// OffsetCommit request (api key 8), versions 2-9, flexible from v8.
pub(super) const OFFSET_COMMIT: Api = Api {
    key: 8,
    name: "OffsetCommit",
    min: 2,
    max: 9,
    flexible: 8,
    body: Struct {
        fields: &[
            field("group_id", STRING),
            field("generation_id_or_member_epoch", INT32),
            field("member_id", STRING),
            field("group_instance_id", STRING).since(7).nullable(),
            field("retention_time_ms", INT64).until(4),
            field("topics", structs(&OFFSET_COMMIT_TOPIC)),
        ],
        tagged: &[],
    },
};

/// OffsetCommit: `OffsetCommitRequestPartition`.
const OFFSET_COMMIT_PARTITION: Struct = Struct {
    fields: &[
        field("partition_index", INT32),
        field("committed_offset", INT64),
        field("committed_leader_epoch", INT32).since(6),
        field("committed_metadata", STRING).nullable(),
    ],
    tagged: &[],
};

/// OffsetCommit: `OffsetCommitRequestTopic`.
const OFFSET_COMMIT_TOPIC: Struct = Struct {
    fields: &[
        field("name", STRING),
        field("partitions", structs(&OFFSET_COMMIT_PARTITION)),
    ],
    tagged: &[],
};

// ---- OffsetFetch (9) ----

/// OffsetFetch request (api key 9), versions 1-9, flexible from v6.
pub(super) const OFFSET_FETCH: Api = Api {
    key: 9,
    name: "OffsetFetch",
    min: 1,
    max: 9,
    flexible: 6,
    body: Struct {
        fields: &[
            field("group_id", STRING).until(7),
            field("topics", structs(&OFFSET_FETCH_TOPIC))
                .until(7)
                .nullable(),
            field("groups", structs(&OFFSET_FETCH_GROUP)).since(8),
            field("require_stable", BOOL).since(7),
        ],
        tagged: &[],
    },
};

/// OffsetFetch: `OffsetFetchRequestTopic`.
const OFFSET_FETCH_TOPIC: Struct = Struct {
    fields: &[
        field("name", STRING).until(7),
        field("partition_indexes", array(&INT32)).until(7),
    ],
    tagged: &[],
};

/// OffsetFetch: `OffsetFetchRequestTopics`.
const OFFSET_FETCH_TOPICS: Struct = Struct {
    fields: &[
        field("name", STRING).since(8),
        field("partition_indexes", array(&INT32)).since(8),
    ],
    tagged: &[],
};

/// OffsetFetch: `OffsetFetchRequestGroup`.
const OFFSET_FETCH_GROUP: Struct = Struct {
    fields: &[
        field("group_id", STRING).since(8),
        field("member_id", STRING).since(9).nullable(),
        field("member_epoch", INT32).since(9),
        field("topics", structs(&OFFSET_FETCH_TOPICS))
            .since(8)
            .nullable(),
    ],
    tagged: &[],
};

// ---- FindCoordinator (10) ----

/// FindCoordinator request (api key 10), versions 0-6, flexible from v3.
pub(super) const FIND_COORDINATOR: Api = Api {
    key: 10,
    name: "FindCoordinator",
    min: 0,
    max: 6,
    flexible: 3,
    body: Struct {
        fields: &[
            field("key", STRING).until(3),
            field("key_type", INT8).since(1),
            field("coordinator_keys", array(&STRING)).since(4),
        ],
        tagged: &[],
    },
};

// ---- JoinGroup (11) ----

/// JoinGroup request (api key 11), versions 0-9, flexible from v6.
pub(super) const JOIN_GROUP: Api = Api {
    key: 11,
    name: "JoinGroup",
    min: 0,
    max: 9,
    flexible: 6,
    body: Struct {
        fields: &[
            field("group_id", STRING),
            field("session_timeout_ms", INT32),
            field("rebalance_timeout_ms", INT32).since(1),
            field("member_id", STRING),
            field("group_instance_id", STRING).since(5).nullable(),
            field("protocol_type", STRING),
            field("protocols", structs(&JOIN_GROUP_PROTOCOL)),
            field("reason", STRING).since(8).nullable(),
        ],
        tagged: &[],
    },
};

/// JoinGroup: `JoinGroupRequestProtocol`.
const JOIN_GROUP_PROTOCOL: Struct = Struct {
    fields: &[field("name", STRING), field("metadata", BYTES)],
    tagged: &[],
};

// ---- Heartbeat (12) ----

/// Heartbeat request (api key 12), versions 0-4, flexible from v4.
pub(super) const HEARTBEAT: Api = Api {
    key: 12,
    name: "Heartbeat",
    min: 0,
    max: 4,
    flexible: 4,
    body: Struct {
        fields: &[
            field("group_id", STRING),
            field("generation_id", INT32),
            field("member_id", STRING),
            field("group_instance_id", STRING).since(3).nullable(),
        ],
        tagged: &[],
    },
};

// ---- LeaveGroup (13) ----

/// LeaveGroup request (api key 13), versions 0-5, flexible from v4.
pub(super) const LEAVE_GROUP: Api = Api {
    key: 13,
    name: "LeaveGroup",
    min: 0,
    max: 5,
    flexible: 4,
    body: Struct {
        fields: &[
            field("group_id", STRING),
            field("member_id", STRING).until(2),
            field("members", structs(&LEAVE_GROUP_MEMBER_IDENTITY)).since(3),
        ],
        tagged: &[],
    },
};

/// LeaveGroup: `MemberIdentity`.
const LEAVE_GROUP_MEMBER_IDENTITY: Struct = Struct {
    fields: &[
        field("member_id", STRING).since(3),
        field("group_instance_id", STRING).since(3).nullable(),
        field("reason", STRING).since(5).nullable(),
    ],
    tagged: &[],
};

// ---- SyncGroup (14) ----

/// SyncGroup request (api key 14), versions 0-5, flexible from v4.
pub(super) const SYNC_GROUP: Api = Api {
    key: 14,
    name: "SyncGroup",
    min: 0,
    max: 5,
    flexible: 4,
    body: Struct {
        fields: &[
            field("group_id", STRING),
            field("generation_id", INT32),
            field("member_id", STRING),
            field("group_instance_id", STRING).since(3).nullable(),
            field("protocol_type", STRING).since(5).nullable(),
            field("protocol_name", STRING).since(5).nullable(),
            field("assignments", structs(&SYNC_GROUP_ASSIGNMENT)),
        ],
        tagged: &[],
    },
};

/// SyncGroup: `SyncGroupRequestAssignment`.
const SYNC_GROUP_ASSIGNMENT: Struct = Struct {
    fields: &[field("member_id", STRING), field("assignment", BYTES)],
    tagged: &[],
};

// ---- DescribeGroups (15) ----

/// DescribeGroups request (api key 15), versions 0-6, flexible from v5.
pub(super) const DESCRIBE_GROUPS: Api = Api {
    key: 15,
    name: "DescribeGroups",
    min: 0,
    max: 6,
    flexible: 5,
    body: Struct {
        fields: &[
            field("groups", array(&STRING)),
            field("include_authorized_operations", BOOL).since(3),
        ],
        tagged: &[],
    },
};

// ---- ListGroups (16) ----

/// ListGroups request (api key 16), versions 0-5, flexible from v3.
pub(super) const LIST_GROUPS: Api = Api {
    key: 16,
    name: "ListGroups",
    min: 0,
    max: 5,
    flexible: 3,
    body: Struct {
        fields: &[
            field("states_filter", array(&STRING)).since(4),
            field("types_filter", array(&STRING)).since(5),
        ],
        tagged: &[],
    },
};

// ---- SaslHandshake (17) ----

/// SaslHandshake request (api key 17), versions 0-1, never flexible.
pub(super) const SASL_HANDSHAKE: Api = Api {
    key: 17,
    name: "SaslHandshake",
    min: 0,
    max: 1,
    flexible: NEVER,
    body: Struct {
        fields: &[field("mechanism", STRING)],
        tagged: &[],
    },
};

// ---- ApiVersions (18) ----

/// ApiVersions request (api key 18), versions 0-4, flexible from v3.
pub(super) const API_VERSIONS: Api = Api {
    key: 18,
    name: "ApiVersions",
    min: 0,
    max: 4,
    flexible: 3,
    body: Struct {
        fields: &[
            field("client_software_name", STRING).since(3),
            field("client_software_version", STRING).since(3),
        ],
        tagged: &[],
    },
};

// ---- CreateTopics (19) ----

/// CreateTopics request (api key 19), versions 2-7, flexible from v5.
pub(super) const CREATE_TOPICS: Api = Api {
    key: 19,
    name: "CreateTopics",
    min: 2,
    max: 7,
    flexible: 5,
    body: Struct {
        fields: &[
            field("topics", structs(&CREATE_TOPICS_CREATABLE_TOPIC)),
            field("timeout_ms", INT32),
            field("validate_only", BOOL),
        ],
        tagged: &[],
    },
};

/// CreateTopics: `CreatableReplicaAssignment`.
const CREATE_TOPICS_CREATABLE_REPLICA_ASSIGNMENT: Struct = Struct {
    fields: &[
        field("partition_index", INT32),
        field("broker_ids", array(&INT32)),
    ],
    tagged: &[],
};

/// CreateTopics: `CreatableTopicConfig`.
const CREATE_TOPICS_CREATABLE_TOPIC_CONFIG: Struct = Struct {
    fields: &[field("name", STRING), field("value", STRING).nullable()],
    tagged: &[],
};

/// CreateTopics: `CreatableTopic`.
const CREATE_TOPICS_CREATABLE_TOPIC: Struct = Struct {
    fields: &[
        field("name", STRING),
        field("num_partitions", INT32),
        field("replication_factor", INT16),
        field(
            "assignments",
            structs(&CREATE_TOPICS_CREATABLE_REPLICA_ASSIGNMENT),
        ),
        field("configs", structs(&CREATE_TOPICS_CREATABLE_TOPIC_CONFIG)),
    ],
    tagged: &[],
};

// ---- DeleteTopics (20) ----

/// DeleteTopics request (api key 20), versions 1-6, flexible from v4.
pub(super) const DELETE_TOPICS: Api = Api {
    key: 20,
    name: "DeleteTopics",
    min: 1,
    max: 6,
    flexible: 4,
    body: Struct {
        fields: &[
            field("topics", structs(&DELETE_TOPICS_DELETE_TOPIC_STATE)).since(6),
            field("topic_names", array(&STRING)).until(5),
            field("timeout_ms", INT32),
        ],
        tagged: &[],
    },
};

/// DeleteTopics: `DeleteTopicState`.
const DELETE_TOPICS_DELETE_TOPIC_STATE: Struct = Struct {
    fields: &[
        field("name", STRING).since(6).nullable(),
        field("topic_id", UUID).since(6),
    ],
    tagged: &[],
};

// ---- DeleteRecords (21) ----

/// DeleteRecords request (api key 21), versions 0-2, flexible from v2.
pub(super) const DELETE_RECORDS: Api = Api {
    key: 21,
    name: "DeleteRecords",
    min: 0,
    max: 2,
    flexible: 2,
    body: Struct {
        fields: &[
            field("topics", structs(&DELETE_RECORDS_TOPIC)),
            field("timeout_ms", INT32),
        ],
        tagged: &[],
    },
};

/// DeleteRecords: `DeleteRecordsPartition`.
const DELETE_RECORDS_PARTITION: Struct = Struct {
    fields: &[field("partition_index", INT32), field("offset", INT64)],
    tagged: &[],
};

/// DeleteRecords: `DeleteRecordsTopic`.
const DELETE_RECORDS_TOPIC: Struct = Struct {
    fields: &[
        field("name", STRING),
        field("partitions", structs(&DELETE_RECORDS_PARTITION)),
    ],
    tagged: &[],
};

// ---- InitProducerId (22) ----

/// InitProducerId request (api key 22), versions 0-5, flexible from v2.
pub(super) const INIT_PRODUCER_ID: Api = Api {
    key: 22,
    name: "InitProducerId",
    min: 0,
    max: 5,
    flexible: 2,
    body: Struct {
        fields: &[
            field("transactional_id", STRING).nullable(),
            field("transaction_timeout_ms", INT32),
            field("producer_id", INT64).since(3),
            field("producer_epoch", INT16).since(3),
        ],
        tagged: &[],
    },
};

// ---- OffsetForLeaderEpoch (23) ----

/// OffsetForLeaderEpoch request (api key 23), versions 2-4, flexible from v4.
pub(super) const OFFSET_FOR_LEADER_EPOCH: Api = Api {
    key: 23,
    name: "OffsetForLeaderEpoch",
    min: 2,
    max: 4,
    flexible: 4,
    body: Struct {
        fields: &[
            field("replica_id", INT32).since(3),
            field(
                "topics",
                structs(&OFFSET_FOR_LEADER_EPOCH_OFFSET_FOR_LEADER_TOPIC),
            ),
        ],
        tagged: &[],
    },
};

/// OffsetForLeaderEpoch: `OffsetForLeaderPartition`.
const OFFSET_FOR_LEADER_EPOCH_OFFSET_FOR_LEADER_PARTITION: Struct = Struct {
    fields: &[
        field("partition", INT32),
        field("current_leader_epoch", INT32),
        field("leader_epoch", INT32),
    ],
    tagged: &[],
};

/// OffsetForLeaderEpoch: `OffsetForLeaderTopic`.
const OFFSET_FOR_LEADER_EPOCH_OFFSET_FOR_LEADER_TOPIC: Struct = Struct {
    fields: &[
        field("topic", STRING),
        field(
            "partitions",
            structs(&OFFSET_FOR_LEADER_EPOCH_OFFSET_FOR_LEADER_PARTITION),
        ),
    ],
    tagged: &[],
};

// ---- AddPartitionsToTxn (24) ----

/// AddPartitionsToTxn request (api key 24), versions 0-5, flexible from v3.
pub(super) const ADD_PARTITIONS_TO_TXN: Api = Api {
    key: 24,
    name: "AddPartitionsToTxn",
    min: 0,
    max: 5,
    flexible: 3,
    body: Struct {
        fields: &[
            field("transactions", structs(&ADD_PARTITIONS_TO_TXN_TRANSACTION)).since(4),
            field("v3_and_below_transactional_id", STRING).until(3),
            field("v3_and_below_producer_id", INT64).until(3),
            field("v3_and_below_producer_epoch", INT16).until(3),
            field("v3_and_below_topics", structs(&ADD_PARTITIONS_TO_TXN_TOPIC)).until(3),
        ],
        tagged: &[],
    },
};

/// AddPartitionsToTxn: `AddPartitionsToTxnTopic`.
const ADD_PARTITIONS_TO_TXN_TOPIC: Struct = Struct {
    fields: &[field("name", STRING), field("partitions", array(&INT32))],
    tagged: &[],
};

/// AddPartitionsToTxn: `AddPartitionsToTxnTransaction`.
const ADD_PARTITIONS_TO_TXN_TRANSACTION: Struct = Struct {
    fields: &[
        field("transactional_id", STRING).since(4),
        field("producer_id", INT64).since(4),
        field("producer_epoch", INT16).since(4),
        field("verify_only", BOOL).since(4),
        field("topics", structs(&ADD_PARTITIONS_TO_TXN_TOPIC)).since(4),
    ],
    tagged: &[],
};

// ---- AddOffsetsToTxn (25) ----

/// AddOffsetsToTxn request (api key 25), versions 0-4, flexible from v3.
pub(super) const ADD_OFFSETS_TO_TXN: Api = Api {
    key: 25,
    name: "AddOffsetsToTxn",
    min: 0,
    max: 4,
    flexible: 3,
    body: Struct {
        fields: &[
            field("transactional_id", STRING),
            field("producer_id", INT64),
            field("producer_epoch", INT16),
            field("group_id", STRING),
        ],
        tagged: &[],
    },
};

// ---- EndTxn (26) ----

/// EndTxn request (api key 26), versions 0-5, flexible from v3.
pub(super) const END_TXN: Api = Api {
    key: 26,
    name: "EndTxn",
    min: 0,
    max: 5,
    flexible: 3,
    body: Struct {
        fields: &[
            field("transactional_id", STRING),
            field("producer_id", INT64),
            field("producer_epoch", INT16),
            field("committed", BOOL),
        ],
        tagged: &[],
    },
};

// ---- TxnOffsetCommit (28) ----

/// TxnOffsetCommit request (api key 28), versions 0-5, flexible from v3.
pub(super) const TXN_OFFSET_COMMIT: Api = Api {
    key: 28,
    name: "TxnOffsetCommit",
    min: 0,
    max: 5,
    flexible: 3,
    body: Struct {
        fields: &[
            field("transactional_id", STRING),
            field("group_id", STRING),
            field("producer_id", INT64),
            field("producer_epoch", INT16),
            field("generation_id", INT32).since(3),
            field("member_id", STRING).since(3),
            field("group_instance_id", STRING).since(3).nullable(),
            field("topics", structs(&TXN_OFFSET_COMMIT_TOPIC)),
        ],
        tagged: &[],
    },
};

/// TxnOffsetCommit: `TxnOffsetCommitRequestPartition`.
const TXN_OFFSET_COMMIT_PARTITION: Struct = Struct {
    fields: &[
        field("partition_index", INT32),
        field("committed_offset", INT64),
        field("committed_leader_epoch", INT32).since(2),
        field("committed_metadata", STRING).nullable(),
    ],
    tagged: &[],
};

/// TxnOffsetCommit: `TxnOffsetCommitRequestTopic`.
const TXN_OFFSET_COMMIT_TOPIC: Struct = Struct {
    fields: &[
        field("name", STRING),
        field("partitions", structs(&TXN_OFFSET_COMMIT_PARTITION)),
    ],
    tagged: &[],
};

// ---- DescribeAcls (29) ----

/// DescribeAcls request (api key 29), versions 1-3, flexible from v2.
pub(super) const DESCRIBE_ACLS: Api = Api {
    key: 29,
    name: "DescribeAcls",
    min: 1,
    max: 3,
    flexible: 2,
    body: Struct {
        fields: &[
            field("resource_type_filter", INT8),
            field("resource_name_filter", STRING).nullable(),
            field("pattern_type_filter", INT8),
            field("principal_filter", STRING).nullable(),
            field("host_filter", STRING).nullable(),
            field("operation", INT8),
            field("permission_type", INT8),
        ],
        tagged: &[],
    },
};

// ---- CreateAcls (30) ----

/// CreateAcls request (api key 30), versions 1-3, flexible from v2.
pub(super) const CREATE_ACLS: Api = Api {
    key: 30,
    name: "CreateAcls",
    min: 1,
    max: 3,
    flexible: 2,
    body: Struct {
        fields: &[field("creations", structs(&CREATE_ACLS_ACL_CREATION))],
        tagged: &[],
    },
};

/// CreateAcls: `AclCreation`.
const CREATE_ACLS_ACL_CREATION: Struct = Struct {
    fields: &[
        field("resource_type", INT8),
        field("resource_name", STRING),
        field("resource_pattern_type", INT8),
        field("principal", STRING),
        field("host", STRING),
        field("operation", INT8),
        field("permission_type", INT8),
    ],
    tagged: &[],
};

// ---- DeleteAcls (31) ----

/// DeleteAcls request (api key 31), versions 1-3, flexible from v2.
pub(super) const DELETE_ACLS: Api = Api {
    key: 31,
    name: "DeleteAcls",
    min: 1,
    max: 3,
    flexible: 2,
    body: Struct {
        fields: &[field("filters", structs(&DELETE_ACLS_FILTER))],
        tagged: &[],
    },
};

/// DeleteAcls: `DeleteAclsFilter`.
const DELETE_ACLS_FILTER: Struct = Struct {
    fields: &[
        field("resource_type_filter", INT8),
        field("resource_name_filter", STRING).nullable(),
        field("pattern_type_filter", INT8),
        field("principal_filter", STRING).nullable(),
        field("host_filter", STRING).nullable(),
        field("operation", INT8),
        field("permission_type", INT8),
    ],
    tagged: &[],
};

// ---- DescribeConfigs (32) ----

/// DescribeConfigs request (api key 32), versions 1-4, flexible from v4.
pub(super) const DESCRIBE_CONFIGS: Api = Api {
    key: 32,
    name: "DescribeConfigs",
    min: 1,
    max: 4,
    flexible: 4,
    body: Struct {
        fields: &[
            field("resources", structs(&DESCRIBE_CONFIGS_RESOURCE)),
            field("include_synonyms", BOOL),
            field("include_documentation", BOOL).since(3),
        ],
        tagged: &[],
    },
};

/// DescribeConfigs: `DescribeConfigsResource`.
const DESCRIBE_CONFIGS_RESOURCE: Struct = Struct {
    fields: &[
        field("resource_type", INT8),
        field("resource_name", STRING),
        field("configuration_keys", array(&STRING)).nullable(),
    ],
    tagged: &[],
};

// ---- AlterConfigs (33) ----

/// AlterConfigs request (api key 33), versions 0-2, flexible from v2.
pub(super) const ALTER_CONFIGS: Api = Api {
    key: 33,
    name: "AlterConfigs",
    min: 0,
    max: 2,
    flexible: 2,
    body: Struct {
        fields: &[
            field("resources", structs(&ALTER_CONFIGS_RESOURCE)),
            field("validate_only", BOOL),
        ],
        tagged: &[],
    },
};

/// AlterConfigs: `AlterableConfig`.
const ALTER_CONFIGS_ALTERABLE_CONFIG: Struct = Struct {
    fields: &[field("name", STRING), field("value", STRING).nullable()],
    tagged: &[],
};

/// AlterConfigs: `AlterConfigsResource`.
const ALTER_CONFIGS_RESOURCE: Struct = Struct {
    fields: &[
        field("resource_type", INT8),
        field("resource_name", STRING),
        field("configs", structs(&ALTER_CONFIGS_ALTERABLE_CONFIG)),
    ],
    tagged: &[],
};

// ---- SaslAuthenticate (36) ----

/// SaslAuthenticate request (api key 36), versions 0-2, flexible from v2.
pub(super) const SASL_AUTHENTICATE: Api = Api {
    key: 36,
    name: "SaslAuthenticate",
    min: 0,
    max: 2,
    flexible: 2,
    body: Struct {
        fields: &[field("auth_bytes", BYTES)],
        tagged: &[],
    },
};

// ---- CreatePartitions (37) ----

/// CreatePartitions request (api key 37), versions 0-3, flexible from v2.
pub(super) const CREATE_PARTITIONS: Api = Api {
    key: 37,
    name: "CreatePartitions",
    min: 0,
    max: 3,
    flexible: 2,
    body: Struct {
        fields: &[
            field("topics", structs(&CREATE_PARTITIONS_TOPIC)),
            field("timeout_ms", INT32),
            field("validate_only", BOOL),
        ],
        tagged: &[],
    },
};

/// CreatePartitions: `CreatePartitionsAssignment`.
const CREATE_PARTITIONS_ASSIGNMENT: Struct = Struct {
    fields: &[field("broker_ids", array(&INT32))],
    tagged: &[],
};

/// CreatePartitions: `CreatePartitionsTopic`.
const CREATE_PARTITIONS_TOPIC: Struct = Struct {
    fields: &[
        field("name", STRING),
        field("count", INT32),
        field("assignments", structs(&CREATE_PARTITIONS_ASSIGNMENT)).nullable(),
    ],
    tagged: &[],
};

// ---- DeleteGroups (42) ----

/// DeleteGroups request (api key 42), versions 0-2, flexible from v2.
pub(super) const DELETE_GROUPS: Api = Api {
    key: 42,
    name: "DeleteGroups",
    min: 0,
    max: 2,
    flexible: 2,
    body: Struct {
        fields: &[field("groups_names", array(&STRING))],
        tagged: &[],
    },
};

// ---- IncrementalAlterConfigs (44) ----

/// IncrementalAlterConfigs request (api key 44), versions 0-1, flexible from v1.
pub(super) const INCREMENTAL_ALTER_CONFIGS: Api = Api {
    key: 44,
    name: "IncrementalAlterConfigs",
    min: 0,
    max: 1,
    flexible: 1,
    body: Struct {
        fields: &[
            field(
                "resources",
                structs(&INCREMENTAL_ALTER_CONFIGS_ALTER_CONFIGS_RESOURCE),
            ),
            field("validate_only", BOOL),
        ],
        tagged: &[],
    },
};

/// IncrementalAlterConfigs: `AlterableConfig`.
const INCREMENTAL_ALTER_CONFIGS_ALTERABLE_CONFIG: Struct = Struct {
    fields: &[
        field("name", STRING),
        field("config_operation", INT8),
        field("value", STRING).nullable(),
    ],
    tagged: &[],
};

/// IncrementalAlterConfigs: `AlterConfigsResource`.
const INCREMENTAL_ALTER_CONFIGS_ALTER_CONFIGS_RESOURCE: Struct = Struct {
    fields: &[
        field("resource_type", INT8),
        field("resource_name", STRING),
        field(
            "configs",
            structs(&INCREMENTAL_ALTER_CONFIGS_ALTERABLE_CONFIG),
        ),
    ],
    tagged: &[],
};

// ---- OffsetDelete (47) ----

/// OffsetDelete request (api key 47), versions 0-0, never flexible.
pub(super) const OFFSET_DELETE: Api = Api {
    key: 47,
    name: "OffsetDelete",
    min: 0,
    max: 0,
    flexible: NEVER,
    body: Struct {
        fields: &[
            field("group_id", STRING),
            field("topics", structs(&OFFSET_DELETE_TOPIC)),
        ],
        tagged: &[],
    },
};

/// OffsetDelete: `OffsetDeleteRequestPartition`.
const OFFSET_DELETE_PARTITION: Struct = Struct {
    fields: &[field("partition_index", INT32)],
    tagged: &[],
};

/// OffsetDelete: `OffsetDeleteRequestTopic`.
const OFFSET_DELETE_TOPIC: Struct = Struct {
    fields: &[
        field("name", STRING),
        field("partitions", structs(&OFFSET_DELETE_PARTITION)),
    ],
    tagged: &[],
};

// ---- DescribeUserScramCredentials (50) ----

/// DescribeUserScramCredentials request (api key 50), versions 0-0, flexible from v0.
pub(super) const DESCRIBE_USER_SCRAM_CREDENTIALS: Api = Api {
    key: 50,
    name: "DescribeUserScramCredentials",
    min: 0,
    max: 0,
    flexible: 0,
    body: Struct {
        fields: &[field("users", structs(&DESCRIBE_USER_SCRAM_CREDENTIALS_USER_NAME)).nullable()],
        tagged: &[],
    },
};

/// DescribeUserScramCredentials: `UserName`.
const DESCRIBE_USER_SCRAM_CREDENTIALS_USER_NAME: Struct = Struct {
    fields: &[field("name", STRING)],
    tagged: &[],
};

// ---- AlterUserScramCredentials (51) ----

/// AlterUserScramCredentials request (api key 51), versions 0-0, flexible from v0.
pub(super) const ALTER_USER_SCRAM_CREDENTIALS: Api = Api {
    key: 51,
    name: "AlterUserScramCredentials",
    min: 0,
    max: 0,
    flexible: 0,
    body: Struct {
        fields: &[
            field(
                "deletions",
                structs(&ALTER_USER_SCRAM_CREDENTIALS_SCRAM_CREDENTIAL_DELETION),
            ),
            field(
                "upsertions",
                structs(&ALTER_USER_SCRAM_CREDENTIALS_SCRAM_CREDENTIAL_UPSERTION),
            ),
        ],
        tagged: &[],
    },
};

/// AlterUserScramCredentials: `ScramCredentialDeletion`.
const ALTER_USER_SCRAM_CREDENTIALS_SCRAM_CREDENTIAL_DELETION: Struct = Struct {
    fields: &[field("name", STRING), field("mechanism", INT8)],
    tagged: &[],
};

/// AlterUserScramCredentials: `ScramCredentialUpsertion`.
const ALTER_USER_SCRAM_CREDENTIALS_SCRAM_CREDENTIAL_UPSERTION: Struct = Struct {
    fields: &[
        field("name", STRING),
        field("mechanism", INT8),
        field("iterations", INT32),
        field("salt", BYTES),
        field("salted_password", BYTES),
    ],
    tagged: &[],
};

// ---- DescribeCluster (60) ----

/// DescribeCluster request (api key 60), versions 0-2, flexible from v0.
pub(super) const DESCRIBE_CLUSTER: Api = Api {
    key: 60,
    name: "DescribeCluster",
    min: 0,
    max: 2,
    flexible: 0,
    body: Struct {
        fields: &[
            field("include_cluster_authorized_operations", BOOL),
            field("endpoint_type", INT8).since(1),
            field("include_fenced_brokers", BOOL).since(2),
        ],
        tagged: &[],
    },
};

// ---- ConsumerGroupHeartbeat (68) ----

/// ConsumerGroupHeartbeat request (api key 68), versions 0-1, flexible from v0.
pub(super) const CONSUMER_GROUP_HEARTBEAT: Api = Api {
    key: 68,
    name: "ConsumerGroupHeartbeat",
    min: 0,
    max: 1,
    flexible: 0,
    body: Struct {
        fields: &[
            field("group_id", STRING),
            field("member_id", STRING),
            field("member_epoch", INT32),
            field("instance_id", STRING).nullable(),
            field("rack_id", STRING).nullable(),
            field("rebalance_timeout_ms", INT32),
            field("subscribed_topic_names", array(&STRING)).nullable(),
            field("subscribed_topic_regex", STRING).since(1).nullable(),
            field("server_assignor", STRING).nullable(),
            field(
                "topic_partitions",
                structs(&CONSUMER_GROUP_HEARTBEAT_TOPIC_PARTITIONS),
            )
            .nullable(),
        ],
        tagged: &[],
    },
};

/// ConsumerGroupHeartbeat: `TopicPartitions`.
const CONSUMER_GROUP_HEARTBEAT_TOPIC_PARTITIONS: Struct = Struct {
    fields: &[field("topic_id", UUID), field("partitions", array(&INT32))],
    tagged: &[],
};

// ---- ConsumerGroupDescribe (69) ----

/// ConsumerGroupDescribe request (api key 69), versions 0-1, flexible from v0.
pub(super) const CONSUMER_GROUP_DESCRIBE: Api = Api {
    key: 69,
    name: "ConsumerGroupDescribe",
    min: 0,
    max: 1,
    flexible: 0,
    body: Struct {
        fields: &[
            field("group_ids", array(&STRING)),
            field("include_authorized_operations", BOOL),
        ],
        tagged: &[],
    },
};

/// Every request the guard knows, by api key.
pub(super) const APIS: &[&Api] = &[
    &PRODUCE,
    &FETCH,
    &LIST_OFFSETS,
    &METADATA,
    &OFFSET_COMMIT,
    &OFFSET_FETCH,
    &FIND_COORDINATOR,
    &JOIN_GROUP,
    &HEARTBEAT,
    &LEAVE_GROUP,
    &SYNC_GROUP,
    &DESCRIBE_GROUPS,
    &LIST_GROUPS,
    &SASL_HANDSHAKE,
    &API_VERSIONS,
    &CREATE_TOPICS,
    &DELETE_TOPICS,
    &DELETE_RECORDS,
    &INIT_PRODUCER_ID,
    &OFFSET_FOR_LEADER_EPOCH,
    &ADD_PARTITIONS_TO_TXN,
    &ADD_OFFSETS_TO_TXN,
    &END_TXN,
    &TXN_OFFSET_COMMIT,
    &DESCRIBE_ACLS,
    &CREATE_ACLS,
    &DELETE_ACLS,
    &DESCRIBE_CONFIGS,
    &ALTER_CONFIGS,
    &SASL_AUTHENTICATE,
    &CREATE_PARTITIONS,
    &DELETE_GROUPS,
    &INCREMENTAL_ALTER_CONFIGS,
    &OFFSET_DELETE,
    &DESCRIBE_USER_SCRAM_CREDENTIALS,
    &ALTER_USER_SCRAM_CREDENTIALS,
    &DESCRIBE_CLUSTER,
    &CONSUMER_GROUP_HEARTBEAT,
    &CONSUMER_GROUP_DESCRIBE,
];
