//! The client subcommands: `topic`, `produce`, `consume`. They talk the Kafka protocol to a
//! running broker (`--bootstrap`, `STROM_BOOTSTRAP`), never to the data directory.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::PathBuf;
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
    /// A Kafka client properties file (`security.protocol`, `ssl.ca.location`,
    /// `ssl.certificate.location`, `ssl.key.location`, `sasl.mechanism`, `sasl.jaas.config`
    /// or `sasl.username`/`sasl.password`, `sasl.oauthbearer.token.endpoint.url=file:PATH`
    /// for a token; PEM files only), as Kafka's tools take; the flags below win over it.
    #[arg(long, env = "STROM_COMMAND_CONFIG", global = true, value_name = "FILE")]
    pub(crate) command_config: Option<PathBuf>,
    /// The listener's security protocol: PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL
    /// [default: from the settings given: SASL with a mechanism, SSL with a TLS file].
    #[arg(
        long,
        env = "STROM_SECURITY_PROTOCOL",
        global = true,
        value_name = "PROTOCOL"
    )]
    pub(crate) security_protocol: Option<String>,
    /// PEM file of the CAs trusted for the broker's certificate [default: the system's].
    #[arg(
        long,
        env = "STROM_SSL_CA_LOCATION",
        global = true,
        value_name = "FILE"
    )]
    pub(crate) ssl_ca_location: Option<PathBuf>,
    /// PEM client certificate, for a listener that requires one (mTLS).
    #[arg(
        long,
        env = "STROM_SSL_CERTIFICATE_LOCATION",
        global = true,
        value_name = "FILE"
    )]
    pub(crate) ssl_certificate_location: Option<PathBuf>,
    /// PEM private key of the client certificate (unencrypted).
    #[arg(
        long,
        env = "STROM_SSL_KEY_LOCATION",
        global = true,
        value_name = "FILE"
    )]
    pub(crate) ssl_key_location: Option<PathBuf>,
    /// SASL mechanism for a listener that requires authentication: PLAIN, SCRAM-SHA-256 or
    /// SCRAM-SHA-512 (with --sasl-username and --sasl-password), or OAUTHBEARER (with
    /// --sasl-oauthbearer-token-file).
    #[arg(
        long,
        env = "STROM_SASL_MECHANISM",
        global = true,
        value_name = "MECHANISM"
    )]
    pub(crate) sasl_mechanism: Option<String>,
    /// SASL user.
    #[arg(long, env = "STROM_SASL_USERNAME", global = true, value_name = "USER")]
    pub(crate) sasl_username: Option<String>,
    /// SASL password (prefer the environment variable to the flag).
    #[arg(
        long,
        env = "STROM_SASL_PASSWORD",
        global = true,
        hide_env_values = true,
        value_name = "PASSWORD"
    )]
    pub(crate) sasl_password: Option<String>,
    /// File holding the OAUTHBEARER token (a JWT, compact form; surrounding whitespace is
    /// ignored), read at each command, as Kafka's `file:` token endpoint is.
    #[arg(
        long,
        env = "STROM_SASL_OAUTHBEARER_TOKEN_FILE",
        global = true,
        value_name = "FILE"
    )]
    pub(crate) sasl_oauthbearer_token_file: Option<PathBuf>,
}

impl Connect {
    /// How to reach the listener: flags over `--command-config` (see `client_config`).
    fn options(&self) -> anyhow::Result<strom_kafka::client::ConnectOptions> {
        crate::client_config::resolve(&crate::client_config::Flags {
            command_config: self.command_config.clone(),
            security_protocol: self.security_protocol.clone(),
            ssl_ca_location: self.ssl_ca_location.clone(),
            ssl_certificate_location: self.ssl_certificate_location.clone(),
            ssl_key_location: self.ssl_key_location.clone(),
            sasl_mechanism: self.sasl_mechanism.clone(),
            sasl_username: self.sasl_username.clone(),
            sasl_password: self.sasl_password.clone(),
            sasl_oauthbearer_token_file: self.sasl_oauthbearer_token_file.clone(),
        })
    }

    pub(crate) async fn client(&self) -> anyhow::Result<Client> {
        let options = self.options()?;
        Client::connect_with_options(&self.bootstrap, &options)
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
    /// Show a topic's partitions, offsets and configs; for a compacted topic also the log
    /// cleaner's state per partition, read from the broker's admin endpoint (`/metrics`).
    Describe {
        /// Topic name.
        name: String,
        /// The broker's admin HTTP listener (`/metrics`), for the cleaner state of compacted
        /// topics.
        #[arg(long, env = "STROM_ADMIN", default_value = "127.0.0.1:9644")]
        admin: String,
    },
    /// Change topic configs (IncrementalAlterConfigs).
    Alter {
        /// Topic name.
        name: String,
        /// Config to set, `key=value` (repeatable).
        #[arg(long = "config", short = 'c', value_name = "KEY=VALUE")]
        configs: Vec<String>,
        /// Config to reset to its default (repeatable).
        #[arg(long = "delete-config", value_name = "KEY")]
        reset: Vec<String>,
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
            let map = parse_configs(&configs)?;
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
        TopicCommand::Describe { name, admin } => {
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
            let mut compacted = false;
            for (key, value, source) in client.topic_configs(&name).await? {
                let origin = match source {
                    1 => "topic",
                    4 => "broker",
                    _ => "default",
                };
                if key == "cleanup.policy" {
                    compacted = value.split(',').any(|p| p.trim() == "compact");
                }
                writeln!(out, "  {key} = {value}  ({origin})")?;
            }
            if compacted {
                describe_cleaner(&mut out, &admin, &name, t.partitions).await?;
            }
        }
        TopicCommand::Alter {
            name,
            configs,
            reset,
        } => {
            if configs.is_empty() && reset.is_empty() {
                bail!("nothing to change: give -c KEY=VALUE or --delete-config KEY");
            }
            let map = parse_configs(&configs)?;
            client.alter_topic_configs(&name, &map, &reset).await?;
            writeln!(out, "altered topic {name}")?;
        }
        TopicCommand::Delete { name } => {
            client.delete_topic(&name).await?;
            writeln!(out, "deleted topic {name}")?;
        }
    }
    Ok(())
}

/// The log cleaner section of `topic describe`: the Kafka protocol has no view of the cleaner,
/// so this reads the broker's own `/metrics` (plain HTTP/1.1 GET on the admin listener) and
/// prints the `strom_log_cleaner_*` series of the topic. An unreachable admin endpoint is
/// reported, not an error: the rest of the description stands.
async fn describe_cleaner(
    out: &mut impl Write,
    admin: &str,
    topic: &str,
    partitions: i32,
) -> anyhow::Result<()> {
    let metrics = match fetch_metrics(admin).await {
        Ok(m) => m,
        Err(e) => {
            writeln!(
                out,
                "log cleaner: state unavailable ({admin}/metrics: {e:#}; set --admin or STROM_ADMIN)"
            )?;
            return Ok(());
        }
    };
    writeln!(out, "log cleaner (from {admin}/metrics):")?;
    let now_s = now_ms() as f64 / 1000.0;
    for p in 0..partitions {
        let get = |name: &str| cleaner_metric(&metrics, name, topic, p);
        let Some(ratio) = get("strom_log_cleaner_dirty_ratio") else {
            writeln!(
                out,
                "  partition {p}: not looked at yet (the cleaner is disabled or has not passed since the topic was created)"
            )?;
            continue;
        };
        let lag = get("strom_log_cleaner_lag_seconds").unwrap_or(0.0);
        let cleaned = get("strom_log_cleaner_bytes_cleaned_total").unwrap_or(0.0);
        let removed = get("strom_log_cleaner_records_removed_total").unwrap_or(0.0);
        let last = match get("strom_log_cleaner_last_clean_timestamp_seconds") {
            Some(ts) => format!("{:.1} s ago", (now_s - ts).max(0.0)),
            None => "never".to_owned(),
        };
        writeln!(
            out,
            "  partition {p}: dirty ratio {ratio:.3}, cleaner lag {lag:.1} s, bytes cleaned {cleaned:.0}, records removed {removed:.0}, last clean {last}"
        )?;
    }
    Ok(())
}

/// `GET /metrics` on `admin` (`host:port`), bounded to 10 s; the body.
async fn fetch_metrics(admin: &str) -> anyhow::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let get = async {
        let mut stream = tokio::net::TcpStream::connect(admin).await?;
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: strom\r\nConnection: close\r\n\r\n")
            .await?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await?;
        anyhow::Ok(String::from_utf8_lossy(&response).into_owned())
    };
    let response = tokio::time::timeout(std::time::Duration::from_secs(10), get)
        .await
        .context("timed out")??;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .context("not an HTTP response")?;
    if !head.starts_with("HTTP/1.1 200") {
        bail!("{}", head.lines().next().unwrap_or_default());
    }
    Ok(body.to_owned())
}

/// The value of `name{topic="…",partition="…"}` in an OpenMetrics text body.
fn cleaner_metric(metrics: &str, name: &str, topic: &str, partition: i32) -> Option<f64> {
    let prefix = format!("{name}{{topic=\"{topic}\",partition=\"{partition}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
}

fn parse_configs(configs: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    let mut map = BTreeMap::new();
    for c in configs {
        let Some((k, v)) = c.split_once('=') else {
            bail!("config {c:?} is not KEY=VALUE");
        };
        map.insert(k.to_owned(), v.to_owned());
    }
    Ok(map)
}

/// `strom produce`: one record per line of standard input (or of `--file`).
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
    /// Read lines from this file instead of standard input (shows a progress bar on a
    /// terminal).
    #[arg(long, short = 'F', value_name = "PATH")]
    file: Option<std::path::PathBuf>,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

pub(crate) async fn produce(connect: &Connect, args: ProduceArgs) -> anyhow::Result<()> {
    let mut client = connect.client().await?;
    // As Kafka's clients do: ask Metadata for the topic first, which creates it when the
    // broker auto-creates topics (Produce itself never creates one).
    client
        .topics(Some(&[args.topic.as_str()]))
        .await
        .with_context(|| format!("looking up topic {}", args.topic))?;
    let (input, progress): (Box<dyn BufRead>, Option<indicatif::ProgressBar>) = match &args.file {
        Some(path) => {
            let file =
                std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
            let size = file.metadata().map(|m| m.len()).unwrap_or(0);
            // Hidden automatically when standard error is not a terminal.
            let bar = indicatif::ProgressBar::new(size);
            if let Ok(style) = indicatif::ProgressStyle::with_template(
                "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            ) {
                bar.set_style(style);
            }
            let reader = std::io::BufReader::new(bar.wrap_read(file));
            (Box::new(reader), Some(bar))
        }
        None => (Box::new(std::io::BufReader::new(std::io::stdin())), None),
    };
    let mut pending: Vec<Record> = Vec::with_capacity(args.batch);
    let mut total = 0usize;
    let mut first_offset = None;
    let mut lines = input.lines();
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
    if let Some(bar) = progress {
        bar.finish_and_clear();
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
    pub(crate) topic: String,
    /// Partition.
    #[arg(long, short = 'p', default_value_t = 0)]
    pub(crate) partition: i32,
    /// Where to start: `beginning`, `end`, an offset, or `@MS` for the first record with a
    /// timestamp at or after MS milliseconds since the epoch. With `--group`: where to start
    /// partitions the group has no committed offset for.
    #[arg(long, default_value = "beginning")]
    pub(crate) from: String,
    /// Stop after this many records.
    #[arg(long, short = 'n')]
    pub(crate) count: Option<usize>,
    /// Keep waiting for new records instead of stopping at the end.
    #[arg(long, short = 'f')]
    pub(crate) follow: bool,
    /// Print `offset key value` instead of just the value (same as `--format verbose`).
    #[arg(long, short = 'v')]
    pub(crate) verbose: bool,
    /// Output format: `value` (the value only), `verbose` (offset, key, value, tab-separated)
    /// or `json` (one object per line: offset, timestamp, key, value, headers; bytes as
    /// lossy UTF-8). With `--group`, `verbose` and `json` also show the partition.
    #[arg(long, value_enum, default_value_t = OutputFormat::Value)]
    pub(crate) format: OutputFormat,
    /// Consume as a member of this consumer group: partitions are assigned by the group,
    /// reading starts at the committed offsets and printed records are committed.
    #[arg(long, short = 'g', conflicts_with = "partition")]
    pub(crate) group: Option<String>,
}

/// How `strom consume` prints a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum OutputFormat {
    /// The value only.
    Value,
    /// Offset, key and value, tab-separated.
    Verbose,
    /// One JSON object per line.
    Json,
}

fn lossy(b: Option<&[u8]>) -> serde_json::Value {
    b.map_or(serde_json::Value::Null, |b| {
        serde_json::Value::String(String::from_utf8_lossy(b).into_owned())
    })
}

/// Resolves `--from` (`beginning`, `end`, an offset or `@MS`) to an offset of a partition.
pub(crate) async fn resolve_start(
    client: &mut Client,
    topic: &str,
    partition: i32,
    from: &str,
) -> anyhow::Result<i64> {
    Ok(match from {
        "beginning" => client.list_offset(topic, partition, -2).await?,
        "end" => client.list_offset(topic, partition, -1).await?,
        t if t.starts_with('@') => {
            let ms: i64 = t[1..]
                .parse()
                .with_context(|| format!("--from {t:?}: @ must be followed by milliseconds"))?;
            let found = client.list_offset(topic, partition, ms).await?;
            if found < 0 {
                // No record that late: start at the end.
                client.list_offset(topic, partition, -1).await?
            } else {
                found
            }
        }
        n => n
            .parse()
            .with_context(|| format!("--from {n:?} is not beginning, end or an offset"))?,
    })
}

pub(crate) async fn consume(connect: &Connect, args: ConsumeArgs) -> anyhow::Result<()> {
    if args.group.is_some() {
        return crate::group_cli::consume(connect, args).await;
    }
    let mut client = connect.client().await?;
    let mut offset = resolve_start(&mut client, &args.topic, args.partition, &args.from).await?;
    let format = args.effective_format();
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
        let mut out = stdout.lock();
        offset = print_batches(
            &mut out,
            fetched.records,
            offset,
            format,
            None,
            args.count,
            &mut printed,
        )?;
    }
    Ok(())
}

/// Prints the records of the fetched batches `rest` from `offset` on, up to `count` in total
/// (`printed` so far); returns the next offset to read. `partition` is shown by some formats.
pub(crate) fn print_batches(
    out: &mut impl Write,
    mut rest: Bytes,
    mut offset: i64,
    format: OutputFormat,
    partition: Option<i32>,
    count: Option<usize>,
    printed: &mut usize,
) -> anyhow::Result<i64> {
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
            if r.offset < offset {
                continue;
            }
            if count.is_some_and(|c| *printed >= c) {
                return Ok(offset);
            }
            write_record(out, format, partition, &r)?;
            *printed += 1;
            offset = r.offset + 1;
        }
        offset = offset.max(header.next_offset());
    }
    Ok(offset)
}

impl ConsumeArgs {
    /// `--format`, or `verbose` if `-v` was given.
    pub(crate) fn effective_format(&self) -> OutputFormat {
        if self.verbose {
            OutputFormat::Verbose
        } else {
            self.format
        }
    }
}

/// Prints one record in `format`; `partition` (group consumption) is shown by `verbose`
/// (first column) and `json`.
pub(crate) fn write_record(
    out: &mut impl Write,
    format: OutputFormat,
    partition: Option<i32>,
    r: &strom_record::DecodedRecord,
) -> std::io::Result<()> {
    match format {
        OutputFormat::Value => {
            let value = r.value.as_deref().map(String::from_utf8_lossy);
            writeln!(out, "{}", value.unwrap_or_default())
        }
        OutputFormat::Verbose => {
            let key = r.key.as_deref().map(String::from_utf8_lossy);
            let value = r.value.as_deref().map(String::from_utf8_lossy);
            if let Some(p) = partition {
                write!(out, "{p}\t")?;
            }
            writeln!(
                out,
                "{}\t{}\t{}",
                r.offset,
                key.unwrap_or_default(),
                value.unwrap_or_default()
            )
        }
        OutputFormat::Json => {
            let headers: Vec<serde_json::Value> = r
                .headers
                .iter()
                .map(|h| {
                    serde_json::json!({
                        "key": lossy(Some(&h.key)),
                        "value": lossy(h.value.as_deref()),
                    })
                })
                .collect();
            let mut line = serde_json::json!({
                "offset": r.offset,
                "timestamp": r.timestamp,
                "key": lossy(r.key.as_deref()),
                "value": lossy(r.value.as_deref()),
                "headers": headers,
            });
            if let (Some(p), Some(map)) = (partition, line.as_object_mut()) {
                map.insert("partition".to_owned(), serde_json::Value::from(p));
            }
            writeln!(out, "{line}")
        }
    }
}
