//! `strom acl add|remove|list` (modelled on `kafka-acls.sh`) and `strom user scram
//! set|delete|list` (on `kafka-configs.sh --alter --add-config SCRAM-SHA-256=[...]`). The
//! protocol work is in `strom_kafka::client::acl`; this file parses and prints.

use std::io::{Read, Write};

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use serde::de::DeserializeOwned;
use strom_broker::acl::{
    AclBinding, AclBindingFilter, AclOperation, AclPermission, PatternFilter, PatternType,
    ResourceType,
};
use strom_broker::scram::{MAX_ITERATIONS, MIN_ITERATIONS, ScramMechanism};
use strom_kafka::client::acl::ScramUpsert;

use crate::cli::Connect;
use crate::group_cli::write_table;

/// Parses a Kafka enum name in any case, with `-` or `_` (`describe-configs`, `TOPIC`).
fn kafka_name<T: DeserializeOwned>(s: &str) -> Result<T, String> {
    let canonical = s.trim().to_ascii_uppercase().replace('-', "_");
    serde_json::from_value(serde_json::Value::String(canonical))
        .map_err(|_| format!("unknown value {s:?}"))
}

/// Prints a Kafka enum value as Kafka's tools do (`DESCRIBE_CONFIGS`).
fn show<T: serde::Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        _ => String::from("?"),
    }
}

/// Which ACLs a command is about: a resource pattern and an entry.
#[derive(Debug, Args)]
pub(crate) struct AclSpec {
    /// Resource type: topic, group, cluster, transactional-id, delegation-token, user.
    #[arg(long, value_parser = kafka_name::<ResourceType>)]
    resource_type: Option<ResourceType>,
    /// Resource name (`*` for every resource of the type; the cluster is `kafka-cluster`).
    #[arg(long)]
    resource: Option<String>,
    /// Pattern type: literal, prefixed (filters also take any and match).
    #[arg(long)]
    pattern: Option<String>,
    /// Principal, `User:<name>` or `User:*`.
    #[arg(long)]
    principal: Option<String>,
    /// Host: `*` or a client IP address.
    #[arg(long)]
    host: Option<String>,
    /// Operation (repeatable): all, read, write, create, delete, alter, describe,
    /// cluster-action, describe-configs, alter-configs, idempotent-write.
    #[arg(long = "operation", value_parser = kafka_name::<AclOperation>)]
    operations: Vec<AclOperation>,
    /// Deny rather than allow.
    #[arg(long)]
    deny: bool,
}

impl AclSpec {
    /// The ACLs to create: one per operation; everything required but host (default `*`).
    fn bindings(&self) -> anyhow::Result<Vec<AclBinding>> {
        let Some(resource_type) = self.resource_type else {
            bail!("--resource-type is required");
        };
        let resource_name = match (&self.resource, resource_type) {
            (Some(r), _) => r.clone(),
            (None, ResourceType::Cluster) => "kafka-cluster".to_owned(),
            (None, _) => bail!("--resource is required"),
        };
        let pattern_type = match self.pattern.as_deref() {
            None => PatternType::Literal,
            Some(p) => kafka_name(p).map_err(anyhow::Error::msg)?,
        };
        let Some(principal) = self.principal.clone() else {
            bail!("--principal is required");
        };
        // The broker stores any string, as Kafka does; one without a type matches nobody.
        if !matches!(principal.split_once(':'), Some((kind, name)) if !kind.is_empty() && !name.is_empty())
        {
            bail!("--principal must be <type>:<name>, e.g. User:alice or User:*");
        }
        if self.operations.is_empty() {
            bail!("at least one --operation is required");
        }
        Ok(self
            .operations
            .iter()
            .map(|&operation| AclBinding {
                resource_type,
                resource_name: resource_name.clone(),
                pattern_type,
                principal: principal.clone(),
                host: self.host.clone().unwrap_or_else(|| "*".to_owned()),
                operation,
                permission: if self.deny {
                    AclPermission::Deny
                } else {
                    AclPermission::Allow
                },
            })
            .collect())
    }

    /// The filters: one per operation (or one for any operation); unset fields match anything.
    /// `--deny` narrows to DENY ACLs; without it both permissions match.
    fn filters(&self) -> anyhow::Result<Vec<AclBindingFilter>> {
        let pattern = match self.pattern.as_deref() {
            None => PatternFilter::Any,
            Some(p) if p.eq_ignore_ascii_case("any") => PatternFilter::Any,
            Some(p) if p.eq_ignore_ascii_case("match") => PatternFilter::Match,
            Some(p) => PatternFilter::Exact(kafka_name(p).map_err(anyhow::Error::msg)?),
        };
        let base = AclBindingFilter {
            resource_type: self.resource_type,
            resource_name: self.resource.clone(),
            pattern,
            principal: self.principal.clone(),
            host: self.host.clone(),
            operation: None,
            permission: self.deny.then_some(AclPermission::Deny),
        };
        if self.operations.is_empty() {
            return Ok(vec![base]);
        }
        Ok(self
            .operations
            .iter()
            .map(|&op| AclBindingFilter {
                operation: Some(op),
                ..base.clone()
            })
            .collect())
    }
}

/// `strom acl ...`
#[derive(Debug, Subcommand)]
pub(crate) enum AclCommand {
    /// Add ACLs (CreateAcls): one per `--operation`.
    Add(AclSpec),
    /// Remove every ACL matching (DeleteAcls); needs at least `--resource-type`.
    Remove(AclSpec),
    /// List ACLs matching (DescribeAcls); `--pattern match --resource NAME` shows what
    /// applies to NAME.
    List(AclSpec),
}

fn rows(acls: &[AclBinding]) -> Vec<Vec<String>> {
    acls.iter()
        .map(|a| {
            vec![
                show(&a.resource_type),
                a.resource_name.clone(),
                show(&a.pattern_type),
                a.principal.clone(),
                a.host.clone(),
                show(&a.operation),
                show(&a.permission),
            ]
        })
        .collect()
}

const HEADER: &[&str] = &[
    "RESOURCE-TYPE",
    "NAME",
    "PATTERN",
    "PRINCIPAL",
    "HOST",
    "OPERATION",
    "PERMISSION",
];

pub(crate) async fn acl(connect: &Connect, command: AclCommand) -> anyhow::Result<()> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match command {
        AclCommand::Add(spec) => {
            let acls = spec.bindings()?;
            let mut client = connect.client().await?;
            let results = client.create_acls(&acls).await?;
            let mut failed = None;
            for (acl, result) in acls.iter().zip(results) {
                match result {
                    Ok(()) => writeln!(
                        out,
                        "added {} {} {} on {} {} ({})",
                        show(&acl.permission),
                        acl.principal,
                        show(&acl.operation),
                        show(&acl.resource_type),
                        acl.resource_name,
                        show(&acl.pattern_type)
                    )?,
                    Err(e) => failed = Some(e),
                }
            }
            if let Some(e) = failed {
                return Err(e).context("adding ACLs");
            }
        }
        AclCommand::Remove(spec) => {
            if spec.resource_type.is_none() {
                bail!("--resource-type is required (to remove everything, name it per type)");
            }
            let filters = spec.filters()?;
            let mut client = connect.client().await?;
            let mut removed = Vec::new();
            for result in client.delete_acls(&filters).await? {
                removed.extend(result.context("removing ACLs")?);
            }
            writeln!(out, "removed {} ACLs", removed.len())?;
            if !removed.is_empty() {
                write_table(&mut out, HEADER, &rows(&removed))?;
            }
        }
        AclCommand::List(spec) => {
            let filters = spec.filters()?;
            let mut client = connect.client().await?;
            let mut all = Vec::new();
            for f in &filters {
                all.extend(client.describe_acls(f).await?);
            }
            all.sort();
            all.dedup();
            write_table(&mut out, HEADER, &rows(&all))?;
        }
    }
    Ok(())
}

/// `strom user ...`
#[derive(Debug, Subcommand)]
pub(crate) enum UserCommand {
    /// SCRAM credentials (stored salted and hashed; the password never leaves this process).
    #[command(subcommand)]
    Scram(ScramCommand),
}

/// `strom user scram ...`
#[derive(Debug, Subcommand)]
pub(crate) enum ScramCommand {
    /// Set a user's credential for a mechanism (AlterUserScramCredentials).
    Set {
        /// User name.
        user: String,
        /// SCRAM-SHA-256 or SCRAM-SHA-512.
        #[arg(long, default_value = "SCRAM-SHA-256", value_parser = mechanism)]
        mechanism: ScramMechanism,
        /// The password; `-` reads one line from standard input.
        #[arg(long, env = "STROM_SCRAM_PASSWORD", hide_env_values = true)]
        password: String,
        /// PBKDF2 iterations (4096..=16384).
        #[arg(long, default_value_t = 8192)]
        iterations: i32,
    },
    /// Delete a user's credential for a mechanism.
    Delete {
        /// User name.
        user: String,
        /// SCRAM-SHA-256 or SCRAM-SHA-512.
        #[arg(long, default_value = "SCRAM-SHA-256", value_parser = mechanism)]
        mechanism: ScramMechanism,
    },
    /// List users' credentials (mechanism and iterations); all users if none named.
    List {
        /// User names.
        users: Vec<String>,
    },
}

fn mechanism(s: &str) -> Result<ScramMechanism, String> {
    ScramMechanism::from_name(s).ok_or_else(|| format!("unknown SCRAM mechanism {s:?}"))
}

/// A fresh random salt (32 bytes, from the kernel's CSPRNG).
fn random_salt() -> anyhow::Result<[u8; 32]> {
    let mut salt = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut salt))
        .context("reading /dev/urandom for a salt")?;
    Ok(salt)
}

pub(crate) async fn user(connect: &Connect, command: UserCommand) -> anyhow::Result<()> {
    let UserCommand::Scram(command) = command;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match command {
        ScramCommand::Set {
            user,
            mechanism,
            password,
            iterations,
        } => {
            if !(MIN_ITERATIONS..=MAX_ITERATIONS).contains(&iterations) {
                bail!("--iterations must be within {MIN_ITERATIONS}..={MAX_ITERATIONS}");
            }
            let password = if password == "-" {
                let mut line = String::new();
                std::io::stdin()
                    .read_line(&mut line)
                    .context("reading the password from standard input")?;
                line.trim_end_matches(['\r', '\n']).to_owned()
            } else {
                password
            };
            let salt = random_salt()?;
            let mut client = connect.client().await?;
            let results = client
                .alter_scram_credentials(
                    &[],
                    &[ScramUpsert {
                        user: &user,
                        mechanism,
                        iterations,
                        salt: &salt,
                        password: password.as_bytes(),
                    }],
                )
                .await?;
            for (_, r) in results {
                r.context("setting the credential")?;
            }
            writeln!(out, "set {} credential for {user}", mechanism.name())?;
        }
        ScramCommand::Delete { user, mechanism } => {
            let mut client = connect.client().await?;
            let results = client
                .alter_scram_credentials(&[(&user, mechanism)], &[])
                .await?;
            for (_, r) in results {
                r.context("deleting the credential")?;
            }
            writeln!(out, "deleted {} credential of {user}", mechanism.name())?;
        }
        ScramCommand::List { users } => {
            let mut client = connect.client().await?;
            let names: Vec<&str> = users.iter().map(String::as_str).collect();
            let results = client
                .describe_scram_credentials(if names.is_empty() { None } else { Some(&names) })
                .await?;
            let mut rows = Vec::new();
            for (user, result) in results {
                match result {
                    Ok(infos) => {
                        for (code, iterations) in infos {
                            let name = ScramMechanism::from_code(code).map_or_else(
                                || format!("unknown({code})"),
                                |m| m.name().to_owned(),
                            );
                            rows.push(vec![user.clone(), name, iterations.to_string()]);
                        }
                    }
                    Err(e) => rows.push(vec![user.clone(), format!("error: {e}"), String::new()]),
                }
            }
            write_table(&mut out, &["USER", "MECHANISM", "ITERATIONS"], &rows)?;
        }
    }
    Ok(())
}
