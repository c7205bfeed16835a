//! `strata acl add|list|remove|whoami|hash-token`.

use clap::{Args, Subcommand, ValueEnum};
use serde::Serialize;
use strata_client::{Acl, AclOperation, AclPattern, AclPermission, AclResource, Admin};

use crate::Ctx;
use crate::output::{Format, Table, print_json, usage};

#[derive(Debug, Subcommand)]
pub enum AclCmd {
    /// Add an ACL.
    Add(AclSpec),
    /// List ACLs.
    List {
        /// Only this principal's.
        #[arg(long)]
        principal: Option<String>,
    },
    /// Remove an ACL (the same fields as when it was added).
    Remove(AclSpec),
    /// The principal the brokers see for this client.
    Whoami,
    /// The SHA-256 of a token, as a broker's token file stores it.
    HashToken { token: String },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum OpArg {
    Read,
    Write,
    Describe,
    Create,
    Delete,
    Alter,
    All,
}

/// One ACL on the command line.
#[derive(Debug, Args)]
pub struct AclSpec {
    /// Principal (certificate subject, token name, `anonymous`, or `*`).
    #[arg(long)]
    principal: String,
    /// A topic name (or prefix with --prefix; `*` = every topic).
    #[arg(long, group = "res")]
    topic: Option<String>,
    /// A consumer group name (or prefix with --prefix; `*` = every group).
    #[arg(long, group = "res")]
    group: Option<String>,
    /// The cluster (brokers, ACLs, topic creation).
    #[arg(long, group = "res")]
    cluster: bool,
    /// Match every name starting with the given one.
    #[arg(long)]
    prefix: bool,
    #[arg(long, value_enum)]
    operation: OpArg,
    /// Deny instead of allow (deny wins over any allow).
    #[arg(long)]
    deny: bool,
}

impl AclSpec {
    fn to_acl(&self) -> anyhow::Result<Acl> {
        let (resource, name) = match (&self.topic, &self.group, self.cluster) {
            (Some(t), None, false) => (AclResource::Topic, t.clone()),
            (None, Some(g), false) => (AclResource::Group, g.clone()),
            (None, None, true) => (AclResource::Cluster, String::new()),
            _ => return Err(usage("name one of --topic, --group or --cluster")),
        };
        Ok(Acl {
            principal: self.principal.clone(),
            resource: resource as i32,
            resource_name: name,
            pattern: if self.prefix {
                AclPattern::Prefix
            } else {
                AclPattern::Literal
            } as i32,
            operation: match self.operation {
                OpArg::Read => AclOperation::Read,
                OpArg::Write => AclOperation::Write,
                OpArg::Describe => AclOperation::Describe,
                OpArg::Create => AclOperation::Create,
                OpArg::Delete => AclOperation::Delete,
                OpArg::Alter => AclOperation::Alter,
                OpArg::All => AclOperation::All,
            } as i32,
            permission: if self.deny {
                AclPermission::Deny
            } else {
                AclPermission::Allow
            } as i32,
        })
    }
}

#[derive(Serialize)]
struct AclJson {
    principal: String,
    resource: String,
    name: String,
    pattern: String,
    operation: String,
    permission: String,
}

fn lower(s: &str, prefix: &str) -> String {
    s.strip_prefix(prefix).unwrap_or(s).to_lowercase()
}

impl From<&Acl> for AclJson {
    fn from(a: &Acl) -> Self {
        let res = AclResource::try_from(a.resource)
            .map_or("?".into(), |r| lower(r.as_str_name(), "ACL_RESOURCE_"));
        Self {
            principal: a.principal.clone(),
            resource: res,
            name: a.resource_name.clone(),
            pattern: AclPattern::try_from(a.pattern)
                .map_or("?".into(), |p| lower(p.as_str_name(), "ACL_PATTERN_")),
            operation: AclOperation::try_from(a.operation)
                .map_or("?".into(), |o| lower(o.as_str_name(), "ACL_OPERATION_")),
            permission: AclPermission::try_from(a.permission)
                .map_or("?".into(), |p| lower(p.as_str_name(), "ACL_PERMISSION_")),
        }
    }
}

pub async fn run(ctx: &Ctx, cmd: AclCmd) -> anyhow::Result<()> {
    if let AclCmd::HashToken { token } = &cmd {
        if token.is_empty() {
            return Err(usage("the token is empty"));
        }
        outln!("{}", sha256_hex(token.as_bytes()));
        return Ok(());
    }
    let admin = Admin::new(ctx.client.clone())?;
    match cmd {
        AclCmd::Add(spec) => {
            let acl = spec.to_acl()?;
            admin.create_acls(vec![acl]).await?;
            outln!("added ACL");
        }
        AclCmd::Remove(spec) => {
            let acl = spec.to_acl()?;
            let n = admin.delete_acls(vec![acl]).await?;
            if n == 0 {
                anyhow::bail!("no such ACL");
            }
            outln!("removed ACL");
        }
        AclCmd::List { principal } => {
            let acls: Vec<AclJson> = admin
                .list_acls(principal.as_deref())
                .await?
                .iter()
                .map(AclJson::from)
                .collect();
            if ctx.output == Format::Json {
                return print_json(&acls);
            }
            let mut t = Table::new([
                "PRINCIPAL",
                "RESOURCE",
                "NAME",
                "PATTERN",
                "OPERATION",
                "PERMISSION",
            ]);
            for a in acls {
                t.row(vec![
                    a.principal,
                    a.resource,
                    a.name,
                    a.pattern,
                    a.operation,
                    a.permission,
                ]);
            }
            out!("{}", t.render());
        }
        AclCmd::Whoami => {
            let w = admin.who_am_i().await?;
            if ctx.output == Format::Json {
                return print_json(&serde_json::json!({
                    "principal": w.principal,
                    "authorization": w.authorization,
                }));
            }
            outln!(
                "{} (authorization {})",
                w.principal,
                if w.authorization { "on" } else { "off" }
            );
        }
        AclCmd::HashToken { .. } => {}
    }
    Ok(())
}

fn sha256_hex(data: &[u8]) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, data);
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}
