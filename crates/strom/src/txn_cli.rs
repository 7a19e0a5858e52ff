//! The transaction subcommands, modelled on `kafka-transactions.sh`: `strom txn list`,
//! `strom txn describe <id>` and `strom txn producers --topic T`, the producers (and their open
//! transactions) each partition remembers. The protocol work is in
//! `strom_kafka::client::txn`; this file is plumbing and printing.

use std::io::Write;

use anyhow::bail;
use clap::Subcommand;

use std::collections::BTreeMap;

use strom_kafka::client::txn::ListedTransaction;
use strom_kafka::client::{Client, ClientError};

use crate::cli::Connect;
use crate::group_cli::{GroupFormat as Format, write_table};

/// `strom txn ...`
#[derive(Debug, Subcommand)]
pub(crate) enum TxnCommand {
    /// List transactional ids: id, producer id, state.
    List {
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Show a transactional id's state, producer, timeout and the partitions of its
    /// transaction.
    Describe {
        /// Transactional id.
        transactional_id: String,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Show the producers each partition of a topic remembers and where their open
    /// transaction starts.
    Producers {
        /// Topic.
        #[arg(long)]
        topic: String,
        /// Only this partition (default: all).
        #[arg(long, short = 'p')]
        partition: Option<i32>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
}

pub(crate) async fn txn(connect: &Connect, command: TxnCommand) -> anyhow::Result<()> {
    let mut client = connect.client().await?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match command {
        TxnCommand::List { format } => {
            let all = list_everywhere(client, &connect.bootstrap).await?;
            match format {
                Format::Json => {
                    let list: Vec<serde_json::Value> = all
                        .iter()
                        .map(|t| {
                            serde_json::json!({
                                "transactional_id": t.transactional_id,
                                "producer_id": t.producer_id,
                                "state": t.state,
                            })
                        })
                        .collect();
                    writeln!(out, "{}", serde_json::Value::Array(list))?;
                }
                Format::Table => {
                    let rows: Vec<Vec<String>> = all
                        .into_iter()
                        .map(|t| vec![t.transactional_id, t.producer_id.to_string(), t.state])
                        .collect();
                    write_table(
                        &mut out,
                        &["TRANSACTIONAL-ID", "PRODUCER-ID", "STATE"],
                        &rows,
                    )?;
                }
            }
        }
        TxnCommand::Describe {
            transactional_id,
            format,
        } => {
            let t = at_coordinator(client, &connect.bootstrap, &transactional_id)
                .await?
                .describe_transaction(&transactional_id)
                .await?;
            let partitions: Vec<String> = t
                .partitions
                .iter()
                .map(|(n, p)| format!("{n}-{p}"))
                .collect();
            match format {
                Format::Json => writeln!(
                    out,
                    "{}",
                    serde_json::json!({
                        "transactional_id": t.transactional_id,
                        "state": t.state,
                        "producer_id": t.producer_id,
                        "producer_epoch": t.producer_epoch,
                        "timeout_ms": t.timeout_ms,
                        "start_time_ms": t.start_time_ms,
                        "partitions": partitions,
                    })
                )?,
                Format::Table => {
                    let row = vec![
                        t.transactional_id,
                        t.producer_id.to_string(),
                        t.producer_epoch.to_string(),
                        t.state,
                        t.timeout_ms.to_string(),
                        t.start_time_ms.to_string(),
                        if partitions.is_empty() {
                            "-".to_owned()
                        } else {
                            partitions.join(",")
                        },
                    ];
                    write_table(
                        &mut out,
                        &[
                            "TRANSACTIONAL-ID",
                            "PRODUCER-ID",
                            "EPOCH",
                            "STATE",
                            "TIMEOUT-MS",
                            "START-MS",
                            "PARTITIONS",
                        ],
                        &[row],
                    )?;
                }
            }
        }
        TxnCommand::Producers {
            topic,
            partition,
            format,
        } => {
            let partitions: Vec<i32> = match partition {
                Some(p) => vec![p],
                None => {
                    let Some(info) = client.topics(Some(&[topic.as_str()])).await?.pop() else {
                        bail!("unknown topic {topic:?}");
                    };
                    (0..info.partitions).collect()
                }
            };
            let producers = client.describe_producers(&topic, &partitions).await?;
            match format {
                Format::Json => {
                    let list: Vec<serde_json::Value> = producers
                        .iter()
                        .map(|p| {
                            serde_json::json!({
                                "partition": p.partition,
                                "producer_id": p.producer_id,
                                "producer_epoch": p.producer_epoch,
                                "last_sequence": p.last_sequence,
                                "last_timestamp": p.last_timestamp,
                                "current_txn_start_offset": p.current_txn_start_offset,
                            })
                        })
                        .collect();
                    writeln!(out, "{}", serde_json::Value::Array(list))?;
                }
                Format::Table => {
                    let rows: Vec<Vec<String>> = producers
                        .into_iter()
                        .map(|p| {
                            vec![
                                p.partition.to_string(),
                                p.producer_id.to_string(),
                                p.producer_epoch.to_string(),
                                p.last_sequence.to_string(),
                                p.last_timestamp.to_string(),
                                if p.current_txn_start_offset < 0 {
                                    "-".to_owned()
                                } else {
                                    p.current_txn_start_offset.to_string()
                                },
                            ]
                        })
                        .collect();
                    write_table(
                        &mut out,
                        &[
                            "PARTITION",
                            "PRODUCER-ID",
                            "EPOCH",
                            "LAST-SEQUENCE",
                            "LAST-TIMESTAMP",
                            "TXN-START-OFFSET",
                        ],
                        &rows,
                    )?;
                }
            }
        }
    }
    Ok(())
}

/// ListTransactions on every broker Metadata lists, merged by transactional id: in cluster
/// mode each broker lists the ids it coordinates (as Kafka's admin client, which asks every
/// broker). A broker that cannot be reached is reported on stderr and skipped; at least one
/// must answer.
async fn list_everywhere(
    mut bootstrap: Client,
    bootstrap_addr: &str,
) -> anyhow::Result<Vec<ListedTransaction>> {
    let brokers = bootstrap.brokers().await?;
    if brokers.len() <= 1 {
        return Ok(bootstrap.list_transactions().await?);
    }
    let sasl = bootstrap.sasl_credentials().cloned();
    let mut merged: BTreeMap<String, ListedTransaction> = BTreeMap::new();
    let mut answered = 0usize;
    for addr in &brokers {
        let listed = match Client::connect_with(addr, sasl.as_ref()).await {
            Ok(mut c) => c.list_transactions().await,
            Err(e) => Err(e),
        };
        match listed {
            Ok(ids) => {
                answered += 1;
                for t in ids {
                    merged.insert(t.transactional_id.clone(), t);
                }
            }
            Err(e) => eprintln!("warning: listing the transactions of broker {addr} failed: {e}"),
        }
    }
    if answered == 0 {
        bail!("no broker listed its transactions (bootstrap {bootstrap_addr})");
    }
    Ok(merged.into_values().collect())
}

/// A connection to `transactional_id`'s coordinator (FindCoordinator through the bootstrap
/// broker), or the bootstrap connection itself when the coordinator's advertised address does
/// not answer from here.
async fn at_coordinator(
    mut bootstrap: Client,
    bootstrap_addr: &str,
    transactional_id: &str,
) -> anyhow::Result<Client> {
    let addr = bootstrap
        .find_transaction_coordinator(transactional_id)
        .await?;
    if addr == bootstrap_addr {
        return Ok(bootstrap);
    }
    let sasl = bootstrap.sasl_credentials().cloned();
    match Client::connect_with(&addr, sasl.as_ref()).await {
        Ok(c) => Ok(c),
        Err(ClientError::Io(_)) => Ok(bootstrap),
        Err(e) => Err(e.into()),
    }
}
