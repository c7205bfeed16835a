//! DescribeAcls (key 29), CreateAcls (30) and DeleteAcls (31): Kafka's
//! ACL bindings read and written through the one ACL store the gRPC API
//! and every authorization check use. Kafka principals are `User:NAME`
//! (strata's principal is `NAME`), hosts other than `*` are refused, and
//! Kafka's operations map onto strata's (DESCRIBE_CONFIGS is describe,
//! ALTER_CONFIGS alter, IDEMPOTENT_WRITE write on the cluster).

use kafka_protocol::messages::create_acls_request::{AclCreation, CreateAclsRequest};
use kafka_protocol::messages::create_acls_response::{AclCreationResult, CreateAclsResponse};
use kafka_protocol::messages::delete_acls_request::{DeleteAclsFilter, DeleteAclsRequest};
use kafka_protocol::messages::delete_acls_response::{
    DeleteAclsFilterResult, DeleteAclsMatchingAcl, DeleteAclsResponse,
};
use kafka_protocol::messages::describe_acls_request::DescribeAclsRequest;
use kafka_protocol::messages::describe_acls_response::{
    AclDescription, DescribeAclsResource, DescribeAclsResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::dispatch::{Ctx, Reply, Response};
use super::errors::{self, Refused};
use crate::error::BrokerError;
use crate::security::auth::{Acl, Operation, Pattern, Permission, Resource};

// Kafka's enum codes.
const ANY: i8 = 1;
const MATCH: i8 = 2;
const LITERAL: i8 = 3;
const PREFIXED: i8 = 4;
const TOPIC: i8 = 2;
const GROUP: i8 = 3;
const CLUSTER: i8 = 4;
const DENY: i8 = 2;
const ALLOW: i8 = 3;
const CLUSTER_NAME: &str = "kafka-cluster";

fn text(s: impl Into<String>) -> StrBytes {
    StrBytes::from_string(s.into())
}

fn bad(why: impl Into<String>) -> BrokerError {
    BrokerError::InvalidRequest(why.into())
}

fn resource_of(code: i8) -> Option<Resource> {
    match code {
        TOPIC => Some(Resource::Topic),
        GROUP => Some(Resource::Group),
        CLUSTER => Some(Resource::Cluster),
        _ => None,
    }
}

fn resource_code(r: Resource) -> i8 {
    match r {
        Resource::Topic => TOPIC,
        Resource::Group => GROUP,
        Resource::Cluster => CLUSTER,
    }
}

fn operation_of(code: i8) -> Option<Operation> {
    Some(match code {
        2 => Operation::All,
        3 => Operation::Read,
        4 => Operation::Write,
        5 => Operation::Create,
        6 => Operation::Delete,
        7 | 11 => Operation::Alter,
        8 | 10 => Operation::Describe,
        12 => Operation::Write,
        _ => return None,
    })
}

fn operation_code(o: Operation) -> i8 {
    match o {
        Operation::All => 2,
        Operation::Read => 3,
        Operation::Write => 4,
        Operation::Create => 5,
        Operation::Delete => 6,
        Operation::Alter => 7,
        Operation::Describe => 8,
    }
}

/// `User:NAME` → `NAME` (`User:*` → `*`).
fn principal_of(p: &str) -> Result<String, BrokerError> {
    match p.split_once(':') {
        Some(("User", name)) if !name.is_empty() => Ok(name.to_owned()),
        _ => Err(bad(format!(
            "principal '{p}': expected User:NAME (or User:*)"
        ))),
    }
}

fn acl_of(c: &AclCreation) -> Result<Acl, BrokerError> {
    let resource = resource_of(c.resource_type)
        .ok_or_else(|| bad("resource type must be topic, group or cluster"))?;
    let pattern = match c.resource_pattern_type {
        LITERAL => Pattern::Literal,
        PREFIXED => Pattern::Prefix,
        _ => return Err(bad("pattern type must be literal or prefixed")),
    };
    if c.host.as_str() != "*" {
        return Err(bad("only host '*' is supported"));
    }
    let operation =
        operation_of(c.operation).ok_or_else(|| bad(format!("operation {}", c.operation)))?;
    let permission = match c.permission_type {
        ALLOW => Permission::Allow,
        DENY => Permission::Deny,
        _ => return Err(bad("permission must be allow or deny")),
    };
    // IDEMPOTENT_WRITE is a cluster operation in Kafka.
    let resource = if c.operation == 12 {
        Resource::Cluster
    } else {
        resource
    };
    let name = if resource == Resource::Cluster {
        String::new()
    } else if c.resource_name.is_empty() {
        return Err(bad("empty resource name"));
    } else {
        c.resource_name.to_string()
    };
    Ok(Acl {
        principal: principal_of(&c.principal)?,
        resource,
        name,
        pattern,
        operation,
        permission,
    })
}

/// A Kafka ACL filter over strata's ACLs.
struct Filter {
    resource: i8,
    name: Option<String>,
    pattern: i8,
    /// As Kafka names it (`User:NAME`); any other string matches nothing,
    /// as in Kafka, where a filter's principal is compared as given.
    principal: Option<String>,
    operation: i8,
    permission: i8,
}

impl Filter {
    fn matches(&self, a: &Acl) -> bool {
        let resource = self.resource == ANY || resource_code(a.resource) == self.resource;
        let kafka_name = if a.resource == Resource::Cluster {
            CLUSTER_NAME
        } else {
            a.name.as_str()
        };
        let pattern_code = match a.pattern {
            Pattern::Literal => LITERAL,
            Pattern::Prefix => PREFIXED,
        };
        let name_and_pattern = match (self.pattern, &self.name) {
            (MATCH, Some(n)) => match a.pattern {
                Pattern::Literal => kafka_name == n || kafka_name == "*",
                Pattern::Prefix => n.starts_with(kafka_name),
            },
            (MATCH, None) | (ANY, None) => true,
            (ANY, Some(n)) => kafka_name == n,
            (p, n) => p == pattern_code && n.as_ref().is_none_or(|n| kafka_name == n),
        };
        let principal = self
            .principal
            .as_ref()
            .is_none_or(|p| p.strip_prefix("User:") == Some(a.principal.as_str()));
        let operation = self.operation == ANY || operation_code(a.operation) == self.operation;
        let permission = self.permission == ANY
            || match a.permission {
                Permission::Allow => self.permission == ALLOW,
                Permission::Deny => self.permission == DENY,
            };
        resource && name_and_pattern && principal && operation && permission
    }

    fn new(
        resource: i8,
        name: Option<&StrBytes>,
        pattern: i8,
        principal: Option<&StrBytes>,
        operation: i8,
        permission: i8,
    ) -> Self {
        Self {
            resource,
            name: name.map(ToString::to_string),
            pattern,
            principal: principal.map(ToString::to_string),
            operation,
            permission,
        }
    }
}

fn describe_entry(a: &Acl) -> (i8, String, i8, AclDescription) {
    let name = if a.resource == Resource::Cluster {
        CLUSTER_NAME.to_owned()
    } else {
        a.name.clone()
    };
    let pattern = match a.pattern {
        Pattern::Literal => LITERAL,
        Pattern::Prefix => PREFIXED,
    };
    (
        resource_code(a.resource),
        name,
        pattern,
        AclDescription::default()
            .with_principal(text(format!("User:{}", a.principal)))
            .with_host(text("*"))
            .with_operation(operation_code(a.operation))
            .with_permission_type(match a.permission {
                Permission::Allow => ALLOW,
                Permission::Deny => DENY,
            }),
    )
}

fn failure(e: &BrokerError) -> (i16, Option<StrBytes>) {
    (errors::code(e, Refused::Cluster), Some(text(e.to_string())))
}

pub fn describe(ctx: &Ctx, req: DescribeAclsRequest) -> Reply {
    let filter = Filter::new(
        req.resource_type_filter,
        req.resource_name_filter.as_ref(),
        req.pattern_type_filter,
        req.principal_filter.as_ref(),
        req.operation,
        req.permission_type,
    );
    let listed = ctx.broker.list_acls(&ctx.who, |a| filter.matches(a));
    let resp = match listed {
        Ok(acls) => {
            let mut by_resource: std::collections::BTreeMap<(i8, String, i8), Vec<AclDescription>> =
                Default::default();
            for a in &acls {
                let (r, n, p, d) = describe_entry(a);
                by_resource.entry((r, n, p)).or_default().push(d);
            }
            DescribeAclsResponse::default().with_resources(
                by_resource
                    .into_iter()
                    .map(|((r, n, p), acls)| {
                        DescribeAclsResource::default()
                            .with_resource_type(r)
                            .with_resource_name(text(n))
                            .with_pattern_type(p)
                            .with_acls(acls)
                    })
                    .collect(),
            )
        }
        Err(e) => {
            let (code, msg) = failure(&e);
            DescribeAclsResponse::default()
                .with_error_code(code)
                .with_error_message(msg)
        }
    };
    let ok = resp.error_code == errors::NONE;
    Reply::Now(Response::DescribeAcls(resp), ok)
}

pub async fn create(ctx: &Ctx, req: CreateAclsRequest) -> Reply {
    let mut ok = true;
    let mut results = Vec::with_capacity(req.creations.len());
    for c in &req.creations {
        let outcome = match acl_of(c) {
            Ok(acl) => ctx
                .broker
                .change_acls(&ctx.who, vec![acl], true)
                .await
                .map(|_| ()),
            Err(e) => Err(e),
        };
        results.push(match outcome {
            Ok(()) => AclCreationResult::default(),
            Err(e) => {
                ok = false;
                let (code, msg) = failure(&e);
                AclCreationResult::default()
                    .with_error_code(code)
                    .with_error_message(msg)
            }
        });
    }
    Reply::Now(
        Response::CreateAcls(CreateAclsResponse::default().with_results(results)),
        ok,
    )
}

fn filter_of(f: &DeleteAclsFilter) -> Filter {
    Filter::new(
        f.resource_type_filter,
        f.resource_name_filter.as_ref(),
        f.pattern_type_filter,
        f.principal_filter.as_ref(),
        f.operation,
        f.permission_type,
    )
}

pub async fn delete(ctx: &Ctx, req: DeleteAclsRequest) -> Reply {
    let mut ok = true;
    let mut results = Vec::with_capacity(req.filters.len());
    for f in &req.filters {
        let filter = filter_of(f);
        let outcome = match ctx.broker.list_acls(&ctx.who, |a| filter.matches(a)) {
            Ok(matched) if matched.is_empty() => Ok(matched),
            Ok(matched) => ctx
                .broker
                .change_acls(&ctx.who, matched.clone(), false)
                .await
                .map(|_| matched),
            Err(e) => Err(e),
        };
        results.push(match outcome {
            Ok(matched) => DeleteAclsFilterResult::default().with_matching_acls(
                matched
                    .iter()
                    .map(|a| {
                        let (r, n, p, d) = describe_entry(a);
                        DeleteAclsMatchingAcl::default()
                            .with_resource_type(r)
                            .with_resource_name(text(n))
                            .with_pattern_type(p)
                            .with_principal(d.principal)
                            .with_host(d.host)
                            .with_operation(d.operation)
                            .with_permission_type(d.permission_type)
                    })
                    .collect(),
            ),
            Err(e) => {
                ok = false;
                let (code, msg) = failure(&e);
                DeleteAclsFilterResult::default()
                    .with_error_code(code)
                    .with_error_message(msg)
            }
        });
    }
    Reply::Now(
        Response::DeleteAcls(DeleteAclsResponse::default().with_filter_results(results)),
        ok,
    )
}
