//! Access, shared by every front end: SASL users and ACLs. Creating a
//! user derives its SCRAM credentials here (a random salt per mechanism)
//! and stores only those, through the controller; authenticating checks a
//! PLAIN password or looks up the SCRAM credential of the mechanism asked
//! for. Kafka's SCRAM credential APIs set credentials from passwords the
//! client salted. ACL changes and listings go through the one ACL store.

use super::Broker;
use crate::cluster::controller::{ControllerOp, ControllerReply};
use crate::error::{BrokerError, Result};
use crate::security::auth::{Acl, Identity, Operation, Resource};
use crate::security::scram::{self, Mechanism, ScramCredential};

/// Longest user name.
const MAX_USER: usize = 255;

fn random_salt() -> Vec<u8> {
    use ring::rand::SecureRandom;
    let mut b = vec![0u8; 32];
    let _ = ring::rand::SystemRandom::new().fill(&mut b);
    b
}

/// A fresh SCRAM server nonce (printable, no `,`).
pub fn server_nonce() -> String {
    scram::b64::encode(&random_salt()[..18])
}

impl Broker {
    /// Creates or updates `name` with `password` for every SCRAM mechanism
    /// (PLAIN checks the SHA-256 one). Needs alter on the cluster.
    pub async fn upsert_user(
        &self,
        who: &Identity,
        name: &str,
        password: &str,
        iterations: Option<u32>,
    ) -> Result<()> {
        self.authorize(who, Operation::Alter, Resource::Cluster, "")?;
        if !valid_user(name) {
            return Err(BrokerError::InvalidRequest(format!(
                "invalid user name '{name}'"
            )));
        }
        if password.is_empty() {
            return Err(BrokerError::InvalidRequest("empty password".into()));
        }
        let iterations = iterations.unwrap_or(scram::DEFAULT_ITERATIONS);
        let credentials = Mechanism::ALL
            .into_iter()
            .map(|m| ScramCredential::new(m, password, random_salt(), iterations))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| BrokerError::InvalidRequest(e.to_string()))?;
        self.controller()
            .execute(ControllerOp::UpsertUser {
                name: name.to_owned(),
                credentials,
            })
            .await?;
        self.wait_applied_here(|s| s.users.contains_key(name)).await;
        Ok(())
    }

    /// Deletes a user. Needs alter on the cluster.
    pub async fn delete_user(&self, who: &Identity, name: &str) -> Result<()> {
        self.authorize(who, Operation::Alter, Resource::Cluster, "")?;
        match self
            .controller()
            .execute(ControllerOp::DeleteUser {
                name: name.to_owned(),
            })
            .await?
        {
            ControllerReply::Count(0) => Err(BrokerError::InvalidRequest(format!(
                "user '{name}' does not exist"
            ))),
            _ => {
                self.wait_applied_here(|s| !s.users.contains_key(name))
                    .await;
                Ok(())
            }
        }
    }

    /// Users and their mechanisms. Needs describe on the cluster.
    pub fn list_users(&self, who: &Identity) -> Result<Vec<(String, Vec<&'static str>)>> {
        self.authorize(who, Operation::Describe, Resource::Cluster, "")?;
        Ok(self.with_state(|s| {
            s.users
                .iter()
                .map(|(n, cs)| (n.clone(), cs.iter().map(|c| c.mechanism.name()).collect()))
                .collect()
        }))
    }

    /// The SCRAM credential of `user` for `m`.
    pub fn scram_credential(&self, user: &str, m: Mechanism) -> Option<ScramCredential> {
        self.with_state(|s| {
            s.users
                .get(user)
                .and_then(|cs| cs.iter().find(|c| c.mechanism == m).cloned())
        })
    }

    /// Whether `password` is `user`'s (SASL/PLAIN).
    pub fn check_password(&self, user: &str, password: &str) -> bool {
        self.scram_credential(user, Mechanism::Sha256)
            .is_some_and(|c| c.verify_password(password))
    }
}

impl Broker {
    /// Adds (`add`) or removes ACLs as `who` (needs alter on the cluster);
    /// answers how many changed.
    pub async fn change_acls(&self, who: &Identity, acls: Vec<Acl>, add: bool) -> Result<u32> {
        self.authorize(who, Operation::Alter, Resource::Cluster, "")?;
        if acls.is_empty() {
            return Err(BrokerError::InvalidRequest("no ACL given".into()));
        }
        let reply = self
            .controller()
            .execute(ControllerOp::ChangeAcls {
                add,
                acls: acls.clone(),
            })
            .await?;
        let n = match reply {
            ControllerReply::Count(n) => n,
            _ => 0,
        };
        for a in &acls {
            tracing::info!(target: "strata::audit", principal = %who.principal,
                peer = %who.peer.map(|p| p.to_string()).unwrap_or_default(),
                change = if add { "add" } else { "remove" }, acl = ?a, "ACL change");
        }
        if add {
            self.wait_applied_here(|s| acls.iter().all(|a| s.acls.contains(a)))
                .await;
        } else {
            self.wait_applied_here(|s| acls.iter().all(|a| !s.acls.contains(a)))
                .await;
        }
        Ok(n)
    }

    /// The ACLs `keep` selects, as `who` (needs describe on the cluster).
    pub fn list_acls(&self, who: &Identity, keep: impl Fn(&Acl) -> bool) -> Result<Vec<Acl>> {
        self.authorize(who, Operation::Describe, Resource::Cluster, "")?;
        Ok(self.with_state(|s| s.acls.iter().filter(|a| keep(a)).cloned().collect()))
    }
}

/// Why one user's SCRAM credentials were not changed or described.
#[derive(Debug)]
pub enum CredentialRefusal {
    /// No such user, or no credential of a mechanism to remove.
    NotFound,
    /// The user is named twice (for one mechanism) in one request.
    Duplicate,
    /// A mechanism other than SCRAM-SHA-256 and SCRAM-SHA-512.
    UnsupportedMechanism,
    /// Iterations out of bounds, an empty salt, a salted password of the
    /// wrong size, or an invalid user name.
    Unacceptable(String),
    Failed(BrokerError),
}

/// One change of a user's credentials: set (from a password the client
/// salted: iterations, salt, salted password) or remove (`None`) the
/// credential of a mechanism (`None`: one not supported).
#[derive(Debug, Clone)]
pub struct CredentialChange {
    pub user: String,
    pub mechanism: Option<Mechanism>,
    pub set: Option<(u32, Vec<u8>, Vec<u8>)>,
}

type PerUser<T> = Vec<(String, std::result::Result<T, CredentialRefusal>)>;

fn valid_user(name: &str) -> bool {
    !name.is_empty() && name.len() <= MAX_USER && !name.chars().any(|c| c.is_control())
}

impl Broker {
    /// Changes SCRAM credentials (Kafka's AlterUserScramCredentials), as
    /// `who` (needs alter on the cluster): each user's changes apply
    /// together or not at all, and each user has its own outcome.
    pub async fn alter_scram_credentials(
        &self,
        who: &Identity,
        changes: Vec<CredentialChange>,
    ) -> Result<PerUser<()>> {
        self.authorize(who, Operation::Alter, Resource::Cluster, "")?;
        let mut users: Vec<(String, Vec<CredentialChange>)> = Vec::new();
        for c in changes {
            match users.iter_mut().find(|(u, _)| *u == c.user) {
                Some((_, cs)) => cs.push(c),
                None => users.push((c.user.clone(), vec![c])),
            }
        }
        let mut out = Vec::with_capacity(users.len());
        for (user, cs) in users {
            let r = self.change_credentials(&user, cs).await;
            out.push((user, r));
        }
        Ok(out)
    }

    async fn change_credentials(
        &self,
        user: &str,
        changes: Vec<CredentialChange>,
    ) -> std::result::Result<(), CredentialRefusal> {
        if !valid_user(user) {
            return Err(CredentialRefusal::Unacceptable(format!(
                "invalid user name '{user}'"
            )));
        }
        let mut seen = Vec::new();
        let (mut upsert, mut remove) = (Vec::new(), Vec::new());
        for c in changes {
            let m = c.mechanism.ok_or(CredentialRefusal::UnsupportedMechanism)?;
            if seen.contains(&m) {
                return Err(CredentialRefusal::Duplicate);
            }
            seen.push(m);
            match c.set {
                Some((iterations, salt, salted)) => upsert.push(
                    ScramCredential::from_salted(m, &salted, salt, iterations)
                        .map_err(|e| CredentialRefusal::Unacceptable(e.to_string()))?,
                ),
                None => remove.push(m),
            }
        }
        let reply = self
            .controller()
            .execute(ControllerOp::ChangeCredentials {
                name: user.to_owned(),
                upsert: upsert.clone(),
                remove: remove.clone(),
            })
            .await
            .map_err(CredentialRefusal::Failed)?;
        if let ControllerReply::Count(0) = reply {
            return Err(CredentialRefusal::NotFound);
        }
        self.wait_applied_here(|s| {
            let creds = s.users.get(user).map(Vec::as_slice).unwrap_or_default();
            upsert.iter().all(|u| creds.contains(u))
                && remove
                    .iter()
                    .all(|m| !creds.iter().any(|c| c.mechanism == *m))
        })
        .await;
        Ok(())
    }

    /// Each user's SCRAM mechanisms and iteration counts (all users when
    /// `users` is `None`), as `who` (needs describe on the cluster).
    pub fn describe_scram_credentials(
        &self,
        who: &Identity,
        users: Option<Vec<String>>,
    ) -> Result<PerUser<Vec<(Mechanism, u32)>>> {
        self.authorize(who, Operation::Describe, Resource::Cluster, "")?;
        Ok(self.with_state(|s| {
            let of = |name: &str| {
                s.users
                    .get(name)
                    .map(|cs| cs.iter().map(|c| (c.mechanism, c.iterations)).collect())
                    .ok_or(CredentialRefusal::NotFound)
            };
            match users {
                None => s.users.keys().map(|n| (n.clone(), of(n))).collect(),
                Some(names) => names
                    .iter()
                    .enumerate()
                    .map(|(i, n)| {
                        let twice = names[..i].contains(n) || names[i + 1..].contains(n);
                        let r = if twice {
                            Err(CredentialRefusal::Duplicate)
                        } else {
                            of(n)
                        };
                        (n.clone(), r)
                    })
                    .collect(),
            }
        }))
    }
}
