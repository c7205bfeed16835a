//! DescribeConfigs (key 32), AlterConfigs (33) and IncrementalAlterConfigs
//! (44) for topics, through the broker's topic-config operations. Every
//! config of a topic is answered with its value, its source (set on the
//! topic, or the broker default) and the default flag, as tools expect.
//! Broker resources answer with the broker's start-up settings under
//! Kafka's names (read-only, static broker configs). Each config carries
//! its Kafka type.

use std::collections::BTreeMap;

use kafka_protocol::messages::alter_configs_request::AlterConfigsRequest;
use kafka_protocol::messages::alter_configs_response::{
    AlterConfigsResourceResponse, AlterConfigsResponse,
};
use kafka_protocol::messages::describe_configs_request::DescribeConfigsRequest;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResponse, DescribeConfigsResult,
};
use kafka_protocol::messages::incremental_alter_configs_request::IncrementalAlterConfigsRequest;
use kafka_protocol::messages::incremental_alter_configs_response::{
    AlterConfigsResourceResponse as IncrementalResult, IncrementalAlterConfigsResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::dispatch::{Ctx, Reply, Response};
use super::errors::{self, Refused};
use crate::error::BrokerError;

/// Kafka's resource types.
const TOPIC: i8 = 2;
const BROKER: i8 = 4;
/// Kafka's config sources.
const DYNAMIC_TOPIC_CONFIG: i8 = 1;
const STATIC_BROKER_CONFIG: i8 = 4;
const DEFAULT_CONFIG: i8 = 5;
/// Kafka's config types.
const BOOLEAN: i8 = 1;
const STRING: i8 = 2;
const INT: i8 = 3;
const LONG: i8 = 5;
const LIST: i8 = 7;

/// The Kafka type of a topic config.
fn topic_config_type(key: &str) -> i8 {
    match key {
        "cleanup.policy" => LIST,
        "retention.ms"
        | "retention.bytes"
        | "segment.ms"
        | "retention.local.ms"
        | "retention.local.bytes" => LONG,
        "segment.bytes" | "max.message.bytes" | "index.interval.bytes" | "segment.index.bytes" => {
            INT
        }
        "remote.storage.enable" => BOOLEAN,
        _ => STRING,
    }
}

/// This broker's start-up settings under Kafka's names: (name, value, type).
fn broker_configs(ctx: &Ctx) -> Vec<(&'static str, String, i8)> {
    let c = ctx.broker.config();
    let k = &c.kafka;
    let scheme = match (c.tls.is_some(), k.sasl) {
        (false, crate::config::SaslMode::Off) => "PLAINTEXT",
        (true, crate::config::SaslMode::Off) => "SSL",
        (false, _) => "SASL_PLAINTEXT",
        (true, _) => "SASL_SSL",
    };
    let advertised = ctx.broker.kafka_advertised().unwrap_or_default();
    let listen = k.listen.map(|a| a.to_string()).unwrap_or_default();
    let d = &c.log_defaults;
    let opt = |v: Option<i64>| v.unwrap_or(-1).to_string();
    let mut out = vec![
        ("broker.id", c.node_id.to_string(), INT),
        ("node.id", c.node_id.to_string(), INT),
        (
            "advertised.listeners",
            format!("{scheme}://{advertised}"),
            LIST,
        ),
        ("listeners", format!("{scheme}://{listen}"), LIST),
        (
            "auto.create.topics.enable",
            k.auto_create_topics.to_string(),
            BOOLEAN,
        ),
        ("num.partitions", k.num_partitions.to_string(), INT),
        (
            "default.replication.factor",
            k.default_replication_factor.to_string(),
            INT,
        ),
        ("log.dirs", c.data_dir.display().to_string(), STRING),
        ("log.retention.ms", opt(d.retention_ms), LONG),
        (
            "log.retention.bytes",
            d.retention_bytes
                .and_then(|b| i64::try_from(b).ok())
                .unwrap_or(-1)
                .to_string(),
            LONG,
        ),
        ("log.segment.bytes", d.segment_bytes.to_string(), INT),
        ("log.roll.ms", opt(d.segment_ms), LONG),
        ("message.max.bytes", d.max_message_bytes.to_string(), INT),
    ];
    if k.sasl != crate::config::SaslMode::Off {
        out.push((
            "sasl.enabled.mechanisms",
            "PLAIN,SCRAM-SHA-256,SCRAM-SHA-512".into(),
            LIST,
        ));
    }
    out
}
/// Kafka's incremental operations.
const SET: i8 = 0;
const DELETE: i8 = 1;

fn text(s: impl Into<String>) -> StrBytes {
    StrBytes::from_string(s.into())
}

fn failure(e: &BrokerError) -> (i16, Option<StrBytes>) {
    (errors::code(e, Refused::Topic), Some(text(e.to_string())))
}

pub fn describe(ctx: &Ctx, req: DescribeConfigsRequest) -> Reply {
    let mut ok = true;
    let results = req
        .resources
        .into_iter()
        .map(|r| {
            let base = DescribeConfigsResult::default()
                .with_resource_type(r.resource_type)
                .with_resource_name(r.resource_name.clone());
            match r.resource_type {
                TOPIC => match ctx.broker.describe_topic_config(&ctx.who, &r.resource_name) {
                    Ok(configs) => {
                        let wanted = r.configuration_keys.as_ref();
                        base.with_configs(
                            configs
                                .into_iter()
                                .filter(|(k, ..)| {
                                    wanted.is_none_or(|w| w.iter().any(|x| x.as_str() == k))
                                })
                                .map(|(k, v, set)| {
                                    DescribeConfigsResourceResult::default()
                                        .with_config_type(topic_config_type(&k))
                                        .with_name(text(k))
                                        .with_value(Some(text(v)))
                                        .with_config_source(if set {
                                            DYNAMIC_TOPIC_CONFIG
                                        } else {
                                            DEFAULT_CONFIG
                                        })
                                })
                                .collect(),
                        )
                    }
                    Err(e) => {
                        ok = false;
                        let (code, msg) = failure(&e);
                        base.with_error_code(code).with_error_message(msg)
                    }
                },
                // A broker describes itself ("" is the cluster default).
                BROKER
                    if r.resource_name.is_empty()
                        || r.resource_name.as_str() == ctx.broker.config().node_id.to_string() =>
                {
                    if let Err(e) = ctx.broker.authorize(
                        &ctx.who,
                        crate::security::auth::Operation::Describe,
                        crate::security::auth::Resource::Cluster,
                        "",
                    ) {
                        ok = false;
                        let (_, msg) = failure(&e);
                        return base
                            .with_error_code(errors::code(&e, Refused::Cluster))
                            .with_error_message(msg);
                    }
                    let wanted = r.configuration_keys.as_ref();
                    base.with_configs(
                        broker_configs(ctx)
                            .into_iter()
                            .filter(|(k, ..)| {
                                wanted.is_none_or(|w| w.iter().any(|x| x.as_str() == *k))
                            })
                            .map(|(k, v, ty)| {
                                DescribeConfigsResourceResult::default()
                                    .with_name(text(k))
                                    .with_value(Some(text(v)))
                                    .with_config_type(ty)
                                    .with_config_source(STATIC_BROKER_CONFIG)
                                    .with_read_only(true)
                            })
                            .collect(),
                    )
                }
                BROKER => {
                    ok = false;
                    base.with_error_code(errors::INVALID_REQUEST)
                        .with_error_message(Some(text(format!(
                            "this is broker {}: ask broker {} itself",
                            ctx.broker.config().node_id,
                            r.resource_name.as_str()
                        ))))
                }
                _ => {
                    ok = false;
                    base.with_error_code(errors::INVALID_REQUEST)
                        .with_error_message(Some(text("only topic and broker resources")))
                }
            }
        })
        .collect();
    Reply::Now(
        Response::DescribeConfigs(DescribeConfigsResponse::default().with_results(results)),
        ok,
    )
}

/// Applies `set` to topic `name` (or only checks it with `validate_only`).
async fn alter_topic(
    ctx: &Ctx,
    name: &str,
    set: BTreeMap<String, String>,
    validate_only: bool,
) -> Result<(), BrokerError> {
    if validate_only {
        ctx.broker.describe_topic_config(&ctx.who, name)?;
        for k in set.keys() {
            if !crate::cluster::topic_config::KEYS.contains(&k.as_str()) {
                return Err(BrokerError::InvalidConfig(format!(
                    "unknown topic config '{k}'"
                )));
            }
        }
        return Ok(());
    }
    if set.is_empty() {
        return Ok(());
    }
    ctx.broker.alter_topic_config_as(&ctx.who, name, set).await
}

pub async fn alter(ctx: &Ctx, req: AlterConfigsRequest) -> Reply {
    let mut ok = true;
    let mut responses = Vec::with_capacity(req.resources.len());
    for r in req.resources {
        let base = AlterConfigsResourceResponse::default()
            .with_resource_type(r.resource_type)
            .with_resource_name(r.resource_name.clone());
        let outcome = if r.resource_type != TOPIC {
            Err(BrokerError::InvalidRequest(
                "only topic configs can be altered".into(),
            ))
        } else {
            // AlterConfigs replaces the topic's whole set of overrides.
            let name = r.resource_name.to_string();
            let mut set: BTreeMap<String, String> = r
                .configs
                .iter()
                .map(|c| {
                    (
                        c.name.to_string(),
                        c.value
                            .as_ref()
                            .map(ToString::to_string)
                            .unwrap_or_default(),
                    )
                })
                .collect();
            let current = ctx.broker.with_state(|s| {
                s.topics
                    .get(&name)
                    .map(|m| m.configs.keys().cloned().collect::<Vec<_>>())
                    .unwrap_or_default()
            });
            for k in current {
                set.entry(k).or_default();
            }
            alter_topic(ctx, &name, set, req.validate_only).await
        };
        responses.push(match outcome {
            Ok(()) => base,
            Err(e) => {
                ok = false;
                let (code, msg) = failure(&e);
                base.with_error_code(code).with_error_message(msg)
            }
        });
    }
    Reply::Now(
        Response::AlterConfigs(AlterConfigsResponse::default().with_responses(responses)),
        ok,
    )
}

pub async fn incremental_alter(ctx: &Ctx, req: IncrementalAlterConfigsRequest) -> Reply {
    let mut ok = true;
    let mut responses = Vec::with_capacity(req.resources.len());
    for r in req.resources {
        let base = IncrementalResult::default()
            .with_resource_type(r.resource_type)
            .with_resource_name(r.resource_name.clone());
        let mut set = BTreeMap::new();
        let mut bad = None;
        for c in &r.configs {
            match c.config_operation {
                SET => {
                    set.insert(
                        c.name.to_string(),
                        c.value
                            .as_ref()
                            .map(ToString::to_string)
                            .unwrap_or_default(),
                    );
                }
                DELETE => {
                    set.insert(c.name.to_string(), String::new());
                }
                op => {
                    bad = Some(BrokerError::InvalidRequest(format!(
                        "config operation {op} on '{}': no strata config is a list",
                        c.name.as_str()
                    )));
                }
            }
        }
        let outcome = match bad {
            Some(e) => Err(e),
            None if r.resource_type != TOPIC => Err(BrokerError::InvalidRequest(
                "only topic configs can be altered".into(),
            )),
            None => alter_topic(ctx, &r.resource_name, set, req.validate_only).await,
        };
        responses.push(match outcome {
            Ok(()) => base,
            Err(e) => {
                ok = false;
                let (code, msg) = failure(&e);
                base.with_error_code(code).with_error_message(msg)
            }
        });
    }
    Reply::Now(
        Response::IncrementalAlterConfigs(
            IncrementalAlterConfigsResponse::default().with_responses(responses),
        ),
        ok,
    )
}
