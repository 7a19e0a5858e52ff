//! `strom quota set|remove|describe`: Kafka client quotas, as `kafka-configs.sh
//! --entity-type users/clients` manages them (`--user NAME`, `--client-id ID`, each
//! `<default>` for the default entity). The protocol work is in `strom_kafka::client::quota`;
//! this file parses and prints.

use std::io::Write;

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use strom_broker::quota::{CLIENT_ID, EntityName, QuotaMatch, USER};
use strom_kafka::client::quota::{QuotaEdit, entity_from_flags};

use crate::cli::Connect;
use crate::group_cli::write_table;

/// The entity a `set` or `remove` is about.
#[derive(Debug, Args)]
pub(crate) struct EntityFlags {
    /// The user (principal name without `User:`), or `<default>` for every user without a
    /// quota of their own.
    #[arg(long)]
    user: Option<String>,
    /// The client id, or `<default>`.
    #[arg(long)]
    client_id: Option<String>,
}

/// `strom quota ...`
#[derive(Debug, Subcommand)]
pub(crate) enum QuotaCommand {
    /// Set quotas of a user, a client id, or both (AlterClientQuotas), e.g.
    /// `strom quota set --user alice producer_byte_rate=1048576 request_percentage=50`.
    Set {
        #[command(flatten)]
        entity: EntityFlags,
        /// `key=value` pairs: producer_byte_rate, consumer_byte_rate (bytes per second),
        /// request_percentage (percent of a request-handler thread), controller_mutation_rate.
        #[arg(required = true)]
        quotas: Vec<String>,
        /// Only check the change; store nothing.
        #[arg(long)]
        validate_only: bool,
    },
    /// Remove quota keys of an entity.
    Remove {
        #[command(flatten)]
        entity: EntityFlags,
        /// The keys to remove.
        #[arg(required = true)]
        keys: Vec<String>,
    },
    /// List quotas (DescribeClientQuotas); with no flag, every entity's.
    Describe {
        /// Only entities of this user (`<default>`: the default user).
        #[arg(long, conflicts_with = "any_user")]
        user: Option<String>,
        /// Only entities with a user component (named or default).
        #[arg(long)]
        any_user: bool,
        /// Only entities of this client id (`<default>`: the default client id).
        #[arg(long, conflicts_with = "any_client_id")]
        client_id: Option<String>,
        /// Only entities with a client-id component.
        #[arg(long)]
        any_client_id: bool,
        /// Only entities with no other component than those filtered on.
        #[arg(long)]
        strict: bool,
    },
}

fn parse_pair(pair: &str) -> anyhow::Result<QuotaEdit> {
    let Some((key, value)) = pair.split_once('=') else {
        bail!("expected key=value, got {pair:?}");
    };
    let value: f64 = value
        .trim()
        .parse()
        .with_context(|| format!("the value of {key} is not a number"))?;
    Ok(QuotaEdit {
        key: key.trim().to_owned(),
        value: Some(value),
    })
}

fn filter_match(name: Option<&str>, any: bool) -> Option<QuotaMatch> {
    match (name, any) {
        (Some("<default>"), _) => Some(QuotaMatch::Default),
        (Some(n), _) => Some(QuotaMatch::Exact(n.to_owned())),
        (None, true) => Some(QuotaMatch::Specified),
        (None, false) => None,
    }
}

fn show(name: Option<&EntityName>) -> String {
    name.map_or_else(String::new, ToString::to_string)
}

pub(crate) async fn quota(connect: &Connect, command: QuotaCommand) -> anyhow::Result<()> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match command {
        QuotaCommand::Set {
            entity,
            quotas,
            validate_only,
        } => {
            let Some(e) = entity_from_flags(entity.user.as_deref(), entity.client_id.as_deref())
            else {
                bail!("--user or --client-id is required");
            };
            let edits = quotas
                .iter()
                .map(|p| parse_pair(p))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let mut client = connect.client().await?;
            client
                .alter_client_quotas(&e, &edits, validate_only)
                .await
                .context("setting quotas")?;
            let verb = if validate_only { "valid" } else { "set" };
            writeln!(out, "{verb}: {} for {e}", quotas.join(" "))?;
        }
        QuotaCommand::Remove { entity, keys } => {
            let Some(e) = entity_from_flags(entity.user.as_deref(), entity.client_id.as_deref())
            else {
                bail!("--user or --client-id is required");
            };
            let edits: Vec<QuotaEdit> = keys
                .iter()
                .map(|k| QuotaEdit {
                    key: k.clone(),
                    value: None,
                })
                .collect();
            let mut client = connect.client().await?;
            client
                .alter_client_quotas(&e, &edits, false)
                .await
                .context("removing quotas")?;
            writeln!(out, "removed {} for {e}", keys.join(" "))?;
        }
        QuotaCommand::Describe {
            user,
            any_user,
            client_id,
            any_client_id,
            strict,
        } => {
            let mut components = Vec::new();
            if let Some(m) = filter_match(user.as_deref(), any_user) {
                components.push((USER, m));
            }
            if let Some(m) = filter_match(client_id.as_deref(), any_client_id) {
                components.push((CLIENT_ID, m));
            }
            let mut client = connect.client().await?;
            let mut found = client
                .describe_client_quotas(&components, strict)
                .await
                .context("describing quotas")?;
            found.sort_by(|a, b| a.0.cmp(&b.0));
            let mut rows = Vec::new();
            for (entity, values) in found {
                for (key, value) in values {
                    rows.push(vec![
                        show(entity.user.as_ref()),
                        show(entity.client_id.as_ref()),
                        key,
                        value.to_string(),
                    ]);
                }
            }
            write_table(&mut out, &["USER", "CLIENT-ID", "KEY", "VALUE"], &rows)?;
        }
    }
    Ok(())
}
