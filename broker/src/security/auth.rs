//! Who is asking (principals) and whether they may (ACLs).
//!
//! The principal of a request is, in order: the subject of the client's TLS
//! certificate (its common name, or its first subject alternative name with
//! `--tls-principal san`); the name a bearer token maps to in the token file
//! (tokens are stored as SHA-256 hashes); otherwise `anonymous`.
//!
//! ACLs live in the controller's replicated state. Authorization is off for
//! a cluster without ACLs unless `--authorization on`; once on, a request is
//! allowed when some ACL allows it and none denies it (deny wins), or when
//! the principal is a superuser (configured, plus the brokers' own
//! certificate principal, which forwarded requests carry). Read, write,
//! delete and alter each imply describe.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::SocketAddr;
use std::path::Path;

use serde::{Deserialize, Serialize};
use strata_proto::v1 as pb;

use crate::error::{BrokerError, Result};

/// The principal of an unauthenticated request.
pub const ANONYMOUS: &str = "anonymous";

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Resource {
    Topic,
    Group,
    Cluster,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Pattern {
    Literal,
    Prefix,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    Read,
    Write,
    Describe,
    Create,
    Delete,
    Alter,
    All,
}

#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Permission {
    Allow,
    Deny,
}

/// One access control entry.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Acl {
    pub principal: String,
    pub resource: Resource,
    pub name: String,
    pub pattern: Pattern,
    pub operation: Operation,
    pub permission: Permission,
}

impl Acl {
    fn covers(&self, principal: &str, resource: Resource, name: &str, op: Operation) -> bool {
        let who = self.principal == "*" || self.principal == principal;
        let what = self.resource == resource
            && (resource == Resource::Cluster
                || match self.pattern {
                    Pattern::Literal => self.name == "*" || self.name == name,
                    Pattern::Prefix => name.starts_with(&self.name),
                });
        let how = self.operation == Operation::All
            || self.operation == op
            || (op == Operation::Describe
                && matches!(
                    self.operation,
                    Operation::Read | Operation::Write | Operation::Delete | Operation::Alter
                ));
        who && what && how
    }

    /// From the wire form; refuses unspecified fields.
    pub fn from_proto(a: &pb::Acl) -> Result<Self> {
        let bad = |why: &str| BrokerError::InvalidRequest(format!("invalid ACL: {why}"));
        if a.principal.is_empty() {
            return Err(bad("empty principal"));
        }
        let resource = match pb::AclResource::try_from(a.resource) {
            Ok(pb::AclResource::Topic) => Resource::Topic,
            Ok(pb::AclResource::Group) => Resource::Group,
            Ok(pb::AclResource::Cluster) => Resource::Cluster,
            _ => return Err(bad("resource must be topic, group or cluster")),
        };
        if resource != Resource::Cluster && a.resource_name.is_empty() {
            return Err(bad("empty resource name"));
        }
        let pattern = match pb::AclPattern::try_from(a.pattern) {
            Ok(pb::AclPattern::Literal) => Pattern::Literal,
            Ok(pb::AclPattern::Prefix) => Pattern::Prefix,
            Err(_) => return Err(bad("unknown pattern")),
        };
        let operation = match pb::AclOperation::try_from(a.operation) {
            Ok(pb::AclOperation::Read) => Operation::Read,
            Ok(pb::AclOperation::Write) => Operation::Write,
            Ok(pb::AclOperation::Describe) => Operation::Describe,
            Ok(pb::AclOperation::Create) => Operation::Create,
            Ok(pb::AclOperation::Delete) => Operation::Delete,
            Ok(pb::AclOperation::Alter) => Operation::Alter,
            Ok(pb::AclOperation::All) => Operation::All,
            _ => return Err(bad("unknown operation")),
        };
        let permission = match pb::AclPermission::try_from(a.permission) {
            Ok(pb::AclPermission::Allow) => Permission::Allow,
            Ok(pb::AclPermission::Deny) => Permission::Deny,
            Err(_) => return Err(bad("unknown permission")),
        };
        let name = if resource == Resource::Cluster {
            String::new()
        } else {
            a.resource_name.clone()
        };
        Ok(Self {
            principal: a.principal.clone(),
            resource,
            name,
            pattern,
            operation,
            permission,
        })
    }

    pub fn to_proto(&self) -> pb::Acl {
        pb::Acl {
            principal: self.principal.clone(),
            resource: match self.resource {
                Resource::Topic => pb::AclResource::Topic,
                Resource::Group => pb::AclResource::Group,
                Resource::Cluster => pb::AclResource::Cluster,
            } as i32,
            resource_name: self.name.clone(),
            pattern: match self.pattern {
                Pattern::Literal => pb::AclPattern::Literal,
                Pattern::Prefix => pb::AclPattern::Prefix,
            } as i32,
            operation: match self.operation {
                Operation::Read => pb::AclOperation::Read,
                Operation::Write => pb::AclOperation::Write,
                Operation::Describe => pb::AclOperation::Describe,
                Operation::Create => pb::AclOperation::Create,
                Operation::Delete => pb::AclOperation::Delete,
                Operation::Alter => pb::AclOperation::Alter,
                Operation::All => pb::AclOperation::All,
            } as i32,
            permission: match self.permission {
                Permission::Allow => pb::AclPermission::Allow,
                Permission::Deny => pb::AclPermission::Deny,
            } as i32,
        }
    }
}

/// Allowed by some ACL and denied by none.
pub fn allowed<'a>(
    acls: impl IntoIterator<Item = &'a Acl>,
    principal: &str,
    resource: Resource,
    name: &str,
    op: Operation,
) -> bool {
    let mut allow = false;
    for a in acls
        .into_iter()
        .filter(|a| a.covers(principal, resource, name, op))
    {
        if a.permission == Permission::Deny {
            return false;
        }
        allow = true;
    }
    allow
}

/// `--authorization`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthzMode {
    /// Enforced once the cluster has any ACL.
    Auto,
    On,
    Off,
}

/// Which part of a client certificate names its principal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PrincipalFrom {
    CommonName,
    SubjectAltName,
}

/// Who asks, and from where.
#[derive(Clone, Debug)]
pub struct Identity {
    pub principal: String,
    pub peer: Option<SocketAddr>,
}

/// Principal mapping and authorization settings of a broker.
#[derive(Clone, Debug)]
pub struct Authorizer {
    pub mode: AuthzMode,
    pub superusers: HashSet<String>,
    pub principal_from: PrincipalFrom,
    /// Hex SHA-256 of a token → principal.
    tokens: HashMap<String, String>,
}

impl Default for Authorizer {
    fn default() -> Self {
        Self {
            mode: AuthzMode::Auto,
            superusers: HashSet::new(),
            principal_from: PrincipalFrom::CommonName,
            tokens: HashMap::new(),
        }
    }
}

fn sha256_hex(data: &[u8]) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, data);
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// The SHA-256 a token file stores for `token` (`strata acl hash-token`).
pub fn hash_token(token: &str) -> String {
    sha256_hex(token.as_bytes())
}

impl Authorizer {
    pub fn new(
        mode: AuthzMode,
        superusers: HashSet<String>,
        principal_from: PrincipalFrom,
    ) -> Self {
        Self {
            mode,
            superusers,
            principal_from,
            tokens: HashMap::new(),
        }
    }

    /// Loads a token file: one `principal:sha256-hex-of-token` per line;
    /// blank lines and `#` comments are skipped.
    pub fn load_tokens(&mut self, path: &Path) -> std::result::Result<(), String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read token file {}: {e}", path.display()))?;
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((who, hash)) = line.rsplit_once(':') else {
                return Err(format!(
                    "{}:{}: expected principal:sha256-hex",
                    path.display(),
                    n + 1
                ));
            };
            let hash = hash.trim().to_ascii_lowercase();
            if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(format!(
                    "{}:{}: the token hash must be 64 hex digits (SHA-256)",
                    path.display(),
                    n + 1
                ));
            }
            self.tokens.insert(hash, who.trim().to_owned());
        }
        Ok(())
    }

    /// The identity of a request: certificate, then token, then anonymous.
    pub fn identify<T>(&self, req: &tonic::Request<T>) -> Identity {
        let peer = req.remote_addr();
        if let Some(certs) = req.peer_certs()
            && let Some(first) = certs.first()
            && let Some(p) = self.cert_principal(first.as_ref())
        {
            return Identity { principal: p, peer };
        }
        if let Some(v) = req.metadata().get("authorization")
            && let Ok(v) = v.to_str()
            && let Some(token) = v.strip_prefix("Bearer ")
            && let Some(p) = self.tokens.get(&sha256_hex(token.trim().as_bytes()))
        {
            return Identity {
                principal: p.clone(),
                peer,
            };
        }
        Identity {
            principal: ANONYMOUS.to_owned(),
            peer,
        }
    }

    /// The principal a DER certificate names.
    pub fn cert_principal(&self, der: &[u8]) -> Option<String> {
        let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
        match self.principal_from {
            PrincipalFrom::CommonName => cert
                .subject()
                .iter_common_name()
                .next()
                .and_then(|cn| cn.as_str().ok())
                .map(str::to_owned),
            PrincipalFrom::SubjectAltName => {
                let san = cert.subject_alternative_name().ok()??;
                san.value.general_names.iter().find_map(|n| match n {
                    x509_parser::extensions::GeneralName::DNSName(s)
                    | x509_parser::extensions::GeneralName::RFC822Name(s)
                    | x509_parser::extensions::GeneralName::URI(s) => Some((*s).to_owned()),
                    _ => None,
                })
            }
        }
    }

    /// Whether authorization is enforced (given whether any ACL exists).
    pub fn enforced(&self, any_acl: bool) -> bool {
        match self.mode {
            AuthzMode::On => true,
            AuthzMode::Off => false,
            AuthzMode::Auto => any_acl,
        }
    }

    /// Whether `who` may do `op`: enforcement off, a superuser, or an ACL
    /// allowing it and none denying it.
    pub fn permits(
        &self,
        acls: &BTreeSet<Acl>,
        who: &Identity,
        op: Operation,
        resource: Resource,
        name: &str,
    ) -> bool {
        !self.enforced(!acls.is_empty())
            || self.superusers.contains(&who.principal)
            || allowed(acls, &who.principal, resource, name, op)
    }

    /// Allows the request or answers UNAUTHORIZED (and writes an audit line).
    pub fn check(
        &self,
        acls: &BTreeSet<Acl>,
        who: &Identity,
        op: Operation,
        resource: Resource,
        name: &str,
    ) -> Result<()> {
        if self.permits(acls, who, op, resource, name) {
            return Ok(());
        }
        tracing::warn!(target: "strata::audit", principal = %who.principal,
            peer = %who.peer.map(|p| p.to_string()).unwrap_or_default(),
            resource = ?resource, name, operation = ?op, "denied");
        Err(BrokerError::Unauthorized(format!(
            "principal '{}' may not {} {}{}",
            who.principal,
            format!("{op:?}").to_lowercase(),
            format!("{resource:?}").to_lowercase(),
            if resource == Resource::Cluster {
                String::new()
            } else {
                format!(" '{name}'")
            }
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acl(p: &str, r: Resource, n: &str, pat: Pattern, op: Operation, perm: Permission) -> Acl {
        Acl {
            principal: p.into(),
            resource: r,
            name: n.into(),
            pattern: pat,
            operation: op,
            permission: perm,
        }
    }

    #[test]
    fn allow_deny_prefix_and_implied_describe() {
        use Operation::*;
        let acls = vec![
            acl(
                "alice",
                Resource::Topic,
                "orders",
                Pattern::Literal,
                Write,
                Permission::Allow,
            ),
            acl(
                "bob",
                Resource::Topic,
                "pay.",
                Pattern::Prefix,
                All,
                Permission::Allow,
            ),
            acl(
                "bob",
                Resource::Topic,
                "pay.secret",
                Pattern::Literal,
                Read,
                Permission::Deny,
            ),
            acl(
                "*",
                Resource::Group,
                "*",
                Pattern::Literal,
                Read,
                Permission::Allow,
            ),
        ];
        assert!(allowed(&acls, "alice", Resource::Topic, "orders", Write));
        assert!(allowed(&acls, "alice", Resource::Topic, "orders", Describe));
        assert!(!allowed(&acls, "alice", Resource::Topic, "orders", Read));
        assert!(!allowed(&acls, "alice", Resource::Topic, "orders2", Write));
        assert!(allowed(&acls, "bob", Resource::Topic, "pay.in", Read));
        assert!(!allowed(&acls, "bob", Resource::Topic, "pay.secret", Read));
        assert!(allowed(&acls, "bob", Resource::Topic, "pay.secret", Write));
        assert!(allowed(&acls, "carol", Resource::Group, "g1", Read));
        assert!(!allowed(&acls, "carol", Resource::Cluster, "", Alter));
    }

    #[test]
    fn enforcement_modes_and_superusers() {
        let who = Identity {
            principal: "eve".into(),
            peer: None,
        };
        let auto = Authorizer::default();
        assert!(
            auto.check(
                &BTreeSet::new(),
                &who,
                Operation::Write,
                Resource::Topic,
                "t"
            )
            .is_ok()
        );
        let acls: BTreeSet<Acl> = [acl(
            "alice",
            Resource::Topic,
            "t",
            Pattern::Literal,
            Operation::All,
            Permission::Allow,
        )]
        .into();
        assert!(
            auto.check(&acls, &who, Operation::Write, Resource::Topic, "t")
                .is_err()
        );
        let on = Authorizer::new(
            AuthzMode::On,
            ["eve".to_string()].into(),
            PrincipalFrom::CommonName,
        );
        assert!(
            on.check(
                &BTreeSet::new(),
                &who,
                Operation::Alter,
                Resource::Cluster,
                ""
            )
            .is_ok()
        );
        let off = Authorizer::new(AuthzMode::Off, HashSet::new(), PrincipalFrom::CommonName);
        assert!(
            off.check(&acls, &who, Operation::Write, Resource::Topic, "t")
                .is_ok()
        );
    }

    #[test]
    fn proto_round_trip_and_validation() {
        let a = acl(
            "alice",
            Resource::Topic,
            "orders",
            Pattern::Prefix,
            Operation::Read,
            Permission::Deny,
        );
        assert_eq!(Acl::from_proto(&a.to_proto()).unwrap(), a);
        let mut bad = a.to_proto();
        bad.resource = 0;
        assert!(Acl::from_proto(&bad).is_err());
        let mut bad = a.to_proto();
        bad.principal.clear();
        assert!(Acl::from_proto(&bad).is_err());
    }
}
