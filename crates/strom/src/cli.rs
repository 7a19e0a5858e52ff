//! The client subcommands: `topic`, `produce`, `consume`. They talk the Kafka protocol to a
//! running broker (`--bootstrap`, `STROM_BOOTSTRAP`), never to the data directory.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use bytes::Bytes;
use clap::{Args, Subcommand};
use strom_kafka::client::Client;
use strom_record::{BatchBuilder, BatchHeader, DecodeLimits, Record, decode_records};

/// Where the broker is.
#[derive(Debug, Args)]
pub(crate) struct Connect {
    /// Broker address.
    #[arg(
        long,
        short = 'b',
        env = "STROM_BOOTSTRAP",
        default_value = "127.0.0.1:9092",
        global = true
    )]
    pub(crate) bootstrap: String,
}

impl Connect {
    pub(crate) async fn client(&self) -> anyhow::Result<Client> {
        Client::connect(&self.bootstrap)
            .await
            .with_context(|| format!("connecting to {}", self.bootstrap))
    }
}

/// `strom topic ...`
#[derive(Debug, Subcommand)]
pub(crate) enum TopicCommand {
    /// Create a topic.
    Create {
        /// Topic name.
        name: String,
        /// Partition count (-1 for the broker default).
        #[arg(long, short = 'p', default_value_t = -1)]
        partitions: i32,
        /// Topic config, `key=value` (repeatable), e.g. `-c retention.ms=3600000`.
        #[arg(long = "config", short = 'c', value_name = "KEY=VALUE")]
        configs: Vec<String>,
    },
    /// List topics.
    List,
    /// Show a topic's partitions, offsets and configs.
    Describe {
        /// Topic name.
        name: String,
    },
    /// Delete a topic and its data.
    Delete {
        /// Topic name.
        name: String,
    },
}

pub(crate) async fn topic(connect: &Connect, command: TopicCommand) -> anyhow::Result<()> {
    let mut client = connect.client().await?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match command {
        TopicCommand::Create {
            name,
            partitions,
            configs,
        } => {
            let mut map = BTreeMap::new();
            for c in configs {
                let Some((k, v)) = c.split_once('=') else {
                    bail!("config {c:?} is not KEY=VALUE");
                };
                map.insert(k.to_owned(), v.to_owned());
            }
            client.create_topic(&name, partitions, &map).await?;
            writeln!(out, "created topic {name}")?;
        }
        TopicCommand::List => {
            let mut topics = client.topics(None).await?;
            topics.sort_by(|a, b| a.name.cmp(&b.name));
            for t in topics {
                writeln!(out, "{}\t{} partitions\t{}", t.name, t.partitions, t.id)?;
            }
        }
        TopicCommand::Describe { name } => {
            let topics = client.topics(Some(&[&name])).await?;
            let Some(t) = topics.first() else {
                bail!("no such topic {name}");
            };
            writeln!(
                out,
                "topic {}  id {}  partitions {}",
                t.name, t.id, t.partitions
            )?;
            for p in 0..t.partitions {
                let start = client.list_offset(&name, p, -2).await?;
                let end = client.list_offset(&name, p, -1).await?;
                writeln!(
                    out,
                    "  partition {p}: offsets {start}..{end} ({} records)",
                    end - start
                )?;
            }
            writeln!(out, "configs:")?;
            for (key, value, source) in client.topic_configs(&name).await? {
                let origin = match source {
                    1 => "topic",
                    4 => "broker",
                    _ => "default",
                };
                writeln!(out, "  {key} = {value}  ({origin})")?;
            }
        }
        TopicCommand::Delete { name } => {
            client.delete_topic(&name).await?;
            writeln!(out, "deleted topic {name}")?;
        }
    }
    Ok(())
}

/// `strom produce`: one record per line of standard input.
#[derive(Debug, Args)]
pub(crate) struct ProduceArgs {
    /// Topic (auto-created if the broker allows).
    topic: String,
    /// Partition.
    #[arg(long, short = 'p', default_value_t = 0)]
    partition: i32,
    /// Split each line at the first SEP into key and value.
    #[arg(long, short = 'K', value_name = "SEP")]
    key_separator: Option<String>,
    /// Records per batch.
    #[arg(long, default_value_t = 500)]
    batch: usize,
    /// Acknowledgements: -1 (all), 1 or 0.
    #[arg(long, default_value_t = -1, allow_hyphen_values = true)]
    acks: i16,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

pub(crate) async fn produce(connect: &Connect, args: ProduceArgs) -> anyhow::Result<()> {
    let mut client = connect.client().await?;
    let stdin = std::io::stdin();
    let mut pending: Vec<Record> = Vec::with_capacity(args.batch);
    let mut total = 0usize;
    let mut first_offset = None;
    let mut lines = stdin.lock().lines();
    loop {
        let line = lines.next().transpose().context("reading standard input")?;
        let done = line.is_none();
        if let Some(line) = line {
            let (key, value) = match &args.key_separator {
                Some(sep) => match line.split_once(sep.as_str()) {
                    Some((k, v)) => (Some(Bytes::from(k.to_owned())), v.to_owned()),
                    None => (None, line),
                },
                None => (None, line),
            };
            pending.push(Record::new(now_ms(), key, Some(Bytes::from(value))));
        }
        if !pending.is_empty() && (done || pending.len() >= args.batch.max(1)) {
            let batch = BatchBuilder::new()
                .build(&pending)
                .context("encoding a batch")?;
            let base = client
                .produce(&args.topic, args.partition, args.acks, Bytes::from(batch))
                .await?;
            first_offset.get_or_insert(base);
            total += pending.len();
            pending.clear();
        }
        if done {
            break;
        }
    }
    eprintln!(
        "produced {total} records to {}-{}{}",
        args.topic,
        args.partition,
        first_offset
            .filter(|o| *o >= 0)
            .map(|o| format!(" from offset {o}"))
            .unwrap_or_default()
    );
    Ok(())
}

/// `strom consume`: print records, one per line.
#[derive(Debug, Args)]
pub(crate) struct ConsumeArgs {
    /// Topic.
    topic: String,
    /// Partition.
    #[arg(long, short = 'p', default_value_t = 0)]
    partition: i32,
    /// Where to start: `beginning`, `end` or an offset.
    #[arg(long, default_value = "beginning")]
    from: String,
    /// Stop after this many records.
    #[arg(long, short = 'n')]
    count: Option<usize>,
    /// Keep waiting for new records instead of stopping at the end.
    #[arg(long, short = 'f')]
    follow: bool,
    /// Print `offset key value` instead of just the value.
    #[arg(long, short = 'v')]
    verbose: bool,
}

pub(crate) async fn consume(connect: &Connect, args: ConsumeArgs) -> anyhow::Result<()> {
    let mut client = connect.client().await?;
    let mut offset = match args.from.as_str() {
        "beginning" => client.list_offset(&args.topic, args.partition, -2).await?,
        "end" => client.list_offset(&args.topic, args.partition, -1).await?,
        n => n
            .parse()
            .with_context(|| format!("--from {n:?} is not beginning, end or an offset"))?,
    };
    let mut printed = 0usize;
    let stdout = std::io::stdout();
    loop {
        if args.count.is_some_and(|c| printed >= c) {
            break;
        }
        let fetched = client
            .fetch(
                &args.topic,
                args.partition,
                offset,
                if args.follow { 5_000 } else { 0 },
                4 << 20,
            )
            .await?;
        if fetched.records.is_empty() {
            if !args.follow && offset >= fetched.high_watermark {
                break;
            }
            continue;
        }
        let mut rest = fetched.records;
        let mut out = stdout.lock();
        while !rest.is_empty() {
            let Ok(header) = BatchHeader::parse(&rest) else {
                break;
            };
            let len = header.total_len();
            if len > rest.len() {
                break; // a partial batch at the end of a size-limited fetch
            }
            let batch = rest.split_to(len);
            let decoded =
                decode_records(&batch, DecodeLimits::default()).context("decoding a batch")?;
            for r in decoded.records {
                if r.offset < offset || args.count.is_some_and(|c| printed >= c) {
                    continue;
                }
                let value = r
                    .value
                    .as_deref()
                    .map(String::from_utf8_lossy)
                    .unwrap_or_default();
                if args.verbose {
                    let key = r
                        .key
                        .as_deref()
                        .map(String::from_utf8_lossy)
                        .unwrap_or_default();
                    writeln!(out, "{}\t{key}\t{value}", r.offset)?;
                } else {
                    writeln!(out, "{value}")?;
                }
                printed += 1;
            }
            offset = offset.max(header.next_offset());
        }
    }
    Ok(())
}
