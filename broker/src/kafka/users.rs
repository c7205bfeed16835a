//! DescribeUserScramCredentials (key 50) and AlterUserScramCredentials
//! (key 51), on the broker's one user store (the same users as
//! `strata user`). Kafka names mechanisms by number: 1 = SCRAM-SHA-256,
//! 2 = SCRAM-SHA-512.

use kafka_protocol::messages::alter_user_scram_credentials_request::AlterUserScramCredentialsRequest;
use kafka_protocol::messages::alter_user_scram_credentials_response::{
    AlterUserScramCredentialsResponse, AlterUserScramCredentialsResult,
};
use kafka_protocol::messages::describe_user_scram_credentials_request::DescribeUserScramCredentialsRequest;
use kafka_protocol::messages::describe_user_scram_credentials_response::{
    CredentialInfo, DescribeUserScramCredentialsResponse, DescribeUserScramCredentialsResult,
};
use kafka_protocol::protocol::StrBytes;

use super::dispatch::{Ctx, Reply, Response};
use super::errors::{self, Refused};
use crate::broker::users::{CredentialChange, CredentialRefusal};
use crate::security::scram::Mechanism;

fn mechanism(n: i8) -> Option<Mechanism> {
    match n {
        1 => Some(Mechanism::Sha256),
        2 => Some(Mechanism::Sha512),
        _ => None,
    }
}

fn number(m: Mechanism) -> i8 {
    match m {
        Mechanism::Sha256 => 1,
        Mechanism::Sha512 => 2,
    }
}

/// A refusal as Kafka's code and message.
fn refusal(r: &CredentialRefusal) -> (i16, String) {
    match r {
        CredentialRefusal::NotFound => (errors::RESOURCE_NOT_FOUND, "no such credential".into()),
        CredentialRefusal::Duplicate => {
            (errors::DUPLICATE_RESOURCE, "the user is named twice".into())
        }
        CredentialRefusal::UnsupportedMechanism => (
            errors::UNSUPPORTED_SASL_MECHANISM,
            "only SCRAM-SHA-256 and SCRAM-SHA-512".into(),
        ),
        CredentialRefusal::Unacceptable(why) => (errors::UNACCEPTABLE_CREDENTIAL, why.clone()),
        CredentialRefusal::Failed(e) => (errors::code(e, Refused::Cluster), e.to_string()),
    }
}

fn text(s: String) -> Option<StrBytes> {
    Some(StrBytes::from_string(s))
}

pub fn describe(ctx: &Ctx, req: DescribeUserScramCredentialsRequest) -> Reply {
    // Null or empty: every user.
    let users = req
        .users
        .filter(|us| !us.is_empty())
        .map(|us| us.into_iter().map(|u| u.name.to_string()).collect());
    let resp = match ctx.broker.describe_scram_credentials(&ctx.who, users) {
        Err(e) => DescribeUserScramCredentialsResponse::default()
            .with_error_code(errors::code(&e, Refused::Cluster))
            .with_error_message(text(e.to_string())),
        Ok(per_user) => DescribeUserScramCredentialsResponse::default().with_results(
            per_user
                .into_iter()
                .map(|(user, r)| {
                    let base = DescribeUserScramCredentialsResult::default()
                        .with_user(StrBytes::from_string(user));
                    match r {
                        Ok(infos) => base.with_credential_infos(
                            infos
                                .into_iter()
                                .map(|(m, it)| {
                                    CredentialInfo::default()
                                        .with_mechanism(number(m))
                                        .with_iterations(i32::try_from(it).unwrap_or(i32::MAX))
                                })
                                .collect(),
                        ),
                        Err(r) => {
                            let (code, msg) = refusal(&r);
                            base.with_error_code(code).with_error_message(text(msg))
                        }
                    }
                })
                .collect(),
        ),
    };
    let ok = resp.error_code == errors::NONE && resp.results.iter().all(|r| r.error_code == 0);
    Reply::Now(Response::DescribeUserScramCredentials(resp), ok)
}

pub async fn alter(ctx: &Ctx, req: AlterUserScramCredentialsRequest) -> Reply {
    let mut changes: Vec<CredentialChange> = req
        .deletions
        .into_iter()
        .map(|d| CredentialChange {
            user: d.name.to_string(),
            mechanism: mechanism(d.mechanism),
            set: None,
        })
        .collect();
    changes.extend(req.upsertions.into_iter().map(|u| CredentialChange {
        user: u.name.to_string(),
        mechanism: mechanism(u.mechanism),
        // A negative count is out of bounds like any other.
        set: Some((
            u32::try_from(u.iterations).unwrap_or(0),
            u.salt.to_vec(),
            u.salted_password.to_vec(),
        )),
    }));
    let users: Vec<String> = changes.iter().map(|c| c.user.clone()).collect();
    let results: Vec<AlterUserScramCredentialsResult> =
        match ctx.broker.alter_scram_credentials(&ctx.who, changes).await {
            Ok(per_user) => per_user
                .into_iter()
                .map(|(user, r)| {
                    let base = AlterUserScramCredentialsResult::default()
                        .with_user(StrBytes::from_string(user));
                    match r {
                        Ok(()) => base,
                        Err(r) => {
                            let (code, msg) = refusal(&r);
                            base.with_error_code(code).with_error_message(text(msg))
                        }
                    }
                })
                .collect(),
            // Refused as a whole (authorization): every user says so.
            Err(e) => {
                let mut names = users;
                names.dedup();
                names
                    .into_iter()
                    .map(|u| {
                        AlterUserScramCredentialsResult::default()
                            .with_user(StrBytes::from_string(u))
                            .with_error_code(errors::code(&e, Refused::Cluster))
                            .with_error_message(text(e.to_string()))
                    })
                    .collect()
            }
        };
    let ok = results.iter().all(|r| r.error_code == errors::NONE);
    Reply::Now(
        Response::AlterUserScramCredentials(
            AlterUserScramCredentialsResponse::default().with_results(results),
        ),
        ok,
    )
}
