//! `strata user create|delete|list`: SASL users of the Kafka listener.
//! The password is read from `--password-stdin` (one line) or
//! `--password`; brokers store only salted SCRAM credentials.

use clap::Subcommand;
use serde::Serialize;
use strata_client::Admin;

use crate::Ctx;
use crate::output::{Format, Table, print_json, usage};

#[derive(Debug, Subcommand)]
pub enum UserCmd {
    /// Create a user, or set a new password for one.
    Create {
        name: String,
        /// The password (visible to other local users: prefer --password-stdin).
        #[arg(long, conflicts_with = "password_stdin")]
        password: Option<String>,
        /// Read the password from the first line of stdin.
        #[arg(long)]
        password_stdin: bool,
        /// SCRAM iterations (4096..=16384).
        #[arg(long, default_value_t = 4096)]
        iterations: u32,
    },
    /// Delete a user.
    Delete { name: String },
    /// List users and their SASL mechanisms.
    List,
}

#[derive(Serialize)]
struct UserJson {
    name: String,
    mechanisms: Vec<String>,
}

pub async fn run(ctx: &Ctx, cmd: UserCmd) -> anyhow::Result<()> {
    let admin = Admin::new(ctx.client.clone())?;
    match cmd {
        UserCmd::Create {
            name,
            password,
            password_stdin,
            iterations,
        } => {
            let password = match (password, password_stdin) {
                (Some(p), _) => p,
                (None, true) => {
                    let mut line = String::new();
                    std::io::stdin().read_line(&mut line)?;
                    line.trim_end_matches(['\r', '\n']).to_owned()
                }
                (None, false) => return Err(usage("give --password or --password-stdin")),
            };
            if password.is_empty() {
                return Err(usage("the password is empty"));
            }
            admin.upsert_user(&name, &password, iterations).await?;
            outln!("user {name} created (SCRAM-SHA-256, SCRAM-SHA-512, PLAIN)");
        }
        UserCmd::Delete { name } => {
            admin.delete_user(&name).await?;
            outln!("user {name} deleted");
        }
        UserCmd::List => {
            let users: Vec<UserJson> = admin
                .list_users()
                .await?
                .into_iter()
                .map(|u| UserJson {
                    name: u.name,
                    mechanisms: u.mechanisms,
                })
                .collect();
            if ctx.output == Format::Json {
                return print_json(&users);
            }
            let mut t = Table::new(["USER", "MECHANISMS"]);
            for u in users {
                t.row(vec![u.name, u.mechanisms.join(",")]);
            }
            out!("{}", t.render());
        }
    }
    Ok(())
}
