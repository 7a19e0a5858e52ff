//! The consumer-group subcommands: `strom group list | describe | delete | reset-offsets`
//! (modelled on `kafka-consumer-groups.sh`) and `strom consume --group`, a real group member.
//! The protocol work is in `strom_kafka::client::group`; this file is plumbing and printing.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::{ArgGroup, Args, Subcommand};
use strom_kafka::client::group::{
    GroupMember, ListedGroup, MemberTimeouts, coordinator_moved, is_offset_out_of_range,
};
use strom_kafka::client::{Client, ClientError};

use crate::cli::{Connect, ConsumeArgs, print_batches};

/// How `strom group list` and `describe` print.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum GroupFormat {
    /// Aligned columns.
    Table,
    /// One JSON document.
    Json,
}

/// `strom group ...`
#[derive(Debug, Subcommand)]
pub(crate) enum GroupCommand {
    /// List consumer groups: id, state, protocol type.
    List {
        /// Output format.
        #[arg(long, value_enum, default_value_t = GroupFormat::Table)]
        format: GroupFormat,
    },
    /// Show a group's members and, per partition, the committed offset, the log end offset
    /// and the lag.
    Describe {
        /// Group id.
        group: String,
        /// Output format.
        #[arg(long, value_enum, default_value_t = GroupFormat::Table)]
        format: GroupFormat,
    },
    /// Delete a group and its committed offsets (refused while it has members).
    Delete {
        /// Group id.
        group: String,
    },
    /// Show (and with `--execute`, commit) new offsets for a group that has no active members.
    ResetOffsets(ResetArgs),
}

/// `strom group reset-offsets`: exactly one target is required.
#[derive(Debug, Args)]
#[command(group(
    ArgGroup::new("target")
        .required(true)
        .args(["to_earliest", "to_latest", "to_datetime", "to_offset", "shift_by"])
))]
pub(crate) struct ResetArgs {
    /// Group id.
    group: String,
    /// Topic whose partitions to reset.
    #[arg(long)]
    topic: String,
    /// Only this partition (default: all partitions of the topic).
    #[arg(long, short = 'p')]
    partition: Option<i32>,
    /// Reset to the earliest offset still stored.
    #[arg(long)]
    to_earliest: bool,
    /// Reset to the log end offset.
    #[arg(long)]
    to_latest: bool,
    /// Reset to the first record with a timestamp at or after MS milliseconds since the epoch
    /// (the log end if there is none).
    #[arg(long, value_name = "MS")]
    to_datetime: Option<i64>,
    /// Reset to this offset (clamped to the partition's earliest..latest).
    #[arg(long, value_name = "OFFSET")]
    to_offset: Option<i64>,
    /// Move the committed offset by N (negative: back), clamped to earliest..latest.
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    shift_by: Option<i64>,
    /// Commit the new offsets (without it, only the plan is printed).
    #[arg(long, conflicts_with = "dry_run")]
    execute: bool,
    /// Only print the plan (the default; accepted for kafka-consumer-groups compatibility).
    #[arg(long)]
    dry_run: bool,
}

pub(crate) async fn group(connect: &Connect, command: GroupCommand) -> anyhow::Result<()> {
    let client = connect.client().await?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match command {
        GroupCommand::List { format } => {
            let groups = list_everywhere(client, &connect.bootstrap).await?;
            match format {
                GroupFormat::Json => {
                    let list: Vec<serde_json::Value> = groups
                        .iter()
                        .map(|g| {
                            serde_json::json!({
                                "group": g.group_id,
                                "state": g.state,
                                "protocol_type": g.protocol_type,
                            })
                        })
                        .collect();
                    writeln!(out, "{}", serde_json::Value::Array(list))?;
                }
                GroupFormat::Table => {
                    let rows: Vec<Vec<String>> = groups
                        .into_iter()
                        .map(|g| vec![g.group_id, g.state, dash_if_empty(g.protocol_type)])
                        .collect();
                    write_table(&mut out, &["GROUP", "STATE", "PROTOCOL-TYPE"], &rows)?;
                }
            }
        }
        GroupCommand::Describe { group, format } => {
            let mut routed = Routed::new(client, &connect.bootstrap, &group);
            let described = describe(&mut routed).await?;
            match format {
                GroupFormat::Json => writeln!(out, "{}", described.to_json())?,
                GroupFormat::Table => described.write_table(&mut out)?,
            }
        }
        GroupCommand::Delete { group } => {
            let mut routed = Routed::new(client, &connect.bootstrap, &group);
            routed
                .call(async |c: &mut Client, g: &str| c.delete_group(g).await)
                .await?;
            writeln!(out, "deleted group {group}")?;
        }
        GroupCommand::ResetOffsets(args) => {
            let group = args.group.clone();
            let mut routed = Routed::new(client, &connect.bootstrap, &group);
            reset_offsets(&mut routed, &mut out, args).await?;
        }
    }
    Ok(())
}

/// How long a group request keeps finding its coordinator again (a failover takes about one
/// coordinator-lease TTL plus the new coordinator's replay).
const COORDINATOR_PATIENCE: Duration = Duration::from_secs(60);

/// ListGroups on every broker Metadata lists, merged: in cluster mode each broker lists the
/// groups it coordinates (as Kafka's admin client, which asks every broker). A broker that
/// cannot be reached is reported on stderr and skipped; at least one must answer.
async fn list_everywhere(
    mut bootstrap: Client,
    bootstrap_addr: &str,
) -> anyhow::Result<Vec<ListedGroup>> {
    let brokers = bootstrap.brokers().await?;
    let sasl = bootstrap.sasl_credentials().cloned();
    let mut merged: BTreeMap<String, ListedGroup> = BTreeMap::new();
    let mut answered = 0usize;
    // A single broker (or one whose advertised address is not reachable from here) is asked
    // on the bootstrap connection.
    if brokers.len() <= 1 {
        for g in bootstrap.list_groups().await? {
            merged.insert(g.group_id.clone(), g);
        }
        return Ok(merged.into_values().collect());
    }
    for addr in &brokers {
        let listed = match Client::connect_with(addr, sasl.as_ref()).await {
            Ok(mut c) => c.list_groups().await,
            Err(e) => Err(e),
        };
        match listed {
            Ok(groups) => {
                answered += 1;
                for g in groups {
                    merged.insert(g.group_id.clone(), g);
                }
            }
            Err(e) => eprintln!("warning: listing the groups of broker {addr} failed: {e}"),
        }
    }
    if answered == 0 {
        bail!("no broker listed its groups (bootstrap {bootstrap_addr})");
    }
    Ok(merged.into_values().collect())
}

/// Group requests routed to the group's coordinator (found with FindCoordinator through the
/// bootstrap broker) and sent again to the new one when it moves; everything else (Metadata,
/// ListOffsets) goes to the bootstrap broker.
struct Routed<'a> {
    bootstrap: Client,
    bootstrap_addr: &'a str,
    group: &'a str,
    coordinator: Option<Client>,
}

impl<'a> Routed<'a> {
    fn new(bootstrap: Client, bootstrap_addr: &'a str, group: &'a str) -> Routed<'a> {
        Routed {
            bootstrap,
            bootstrap_addr,
            group,
            coordinator: None,
        }
    }

    /// A connection to the coordinator: the advertised address FindCoordinator names, or the
    /// bootstrap address when that one does not answer (a broker advertising a name this
    /// host cannot reach).
    async fn coordinator(&mut self) -> Result<&mut Client, ClientError> {
        if self.coordinator.is_none() {
            let addr = match self.bootstrap.find_coordinator(self.group).await {
                Ok(addr) => addr,
                // The bootstrap connection itself broke: open it again.
                Err(ClientError::Io(e)) => {
                    let sasl = self.bootstrap.sasl_credentials().cloned();
                    self.bootstrap = Client::connect_with(self.bootstrap_addr, sasl.as_ref())
                        .await
                        .map_err(|_| ClientError::Io(e))?;
                    self.bootstrap.find_coordinator(self.group).await?
                }
                Err(e) => return Err(e),
            };
            let sasl = self.bootstrap.sasl_credentials().cloned();
            let client = match Client::connect_with(&addr, sasl.as_ref()).await {
                Ok(c) => c,
                Err(ClientError::Io(_)) => {
                    Client::connect_with(self.bootstrap_addr, sasl.as_ref()).await?
                }
                Err(e) => return Err(e),
            };
            self.coordinator = Some(client);
        }
        self.coordinator
            .as_mut()
            .ok_or_else(|| ClientError::Protocol("no coordinator connection".into()))
    }

    /// Runs `request` against the group's coordinator, finding it again (for up to
    /// [`COORDINATOR_PATIENCE`]) while it answers that it is not (or not yet) the coordinator.
    async fn call<T>(
        &mut self,
        mut request: impl AsyncFnMut(&mut Client, &str) -> Result<T, ClientError>,
    ) -> Result<T, ClientError> {
        let deadline = std::time::Instant::now() + COORDINATOR_PATIENCE;
        let mut pause = Duration::from_millis(100);
        loop {
            let group = self.group;
            let result = match self.coordinator().await {
                Ok(c) => request(c, group).await,
                Err(e) => Err(e),
            };
            match result {
                Err(e) if coordinator_moved(&e) && std::time::Instant::now() < deadline => {
                    self.coordinator = None;
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(1));
                }
                other => return other,
            }
        }
    }
}

fn dash_if_empty(s: String) -> String {
    if s.is_empty() { "-".to_owned() } else { s }
}

fn dash(v: Option<i64>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

/// Writes rows under a header, columns padded to their widest cell.
pub(crate) fn write_table(
    out: &mut impl Write,
    header: &[&str],
    rows: &[Vec<String>],
) -> std::io::Result<()> {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |out: &mut dyn Write, cells: &mut dyn Iterator<Item = &str>| {
        let mut text = String::new();
        for (i, (cell, w)) in cells.zip(&widths).enumerate() {
            if i + 1 == widths.len() {
                text.push_str(cell);
            } else {
                text.push_str(&format!("{cell:<w$} "));
            }
        }
        writeln!(out, "{}", text.trim_end())
    };
    line(out, &mut header.iter().copied())?;
    for row in rows {
        line(out, &mut row.iter().map(String::as_str))?;
    }
    Ok(())
}

/// One partition row of `group describe`.
#[derive(Debug)]
struct PartitionRow {
    topic: String,
    partition: i32,
    committed: Option<i64>,
    log_end: Option<i64>,
    /// `(member id, host, client id)` of the member it is assigned to.
    member: Option<(String, String, String)>,
}

impl PartitionRow {
    fn lag(&self) -> Option<i64> {
        match (self.committed, self.log_end) {
            (Some(c), Some(e)) => Some((e - c).max(0)),
            _ => None,
        }
    }
}

#[derive(Debug)]
struct Described {
    group: strom_kafka::client::group::DescribedGroup,
    rows: Vec<PartitionRow>,
}

async fn describe(routed: &mut Routed<'_>) -> anyhow::Result<Described> {
    let described = routed
        .call(async |c: &mut Client, g: &str| c.describe_group(g).await)
        .await?;
    let committed = routed
        .call(async |c: &mut Client, g: &str| c.fetch_offsets(g, None).await)
        .await?;
    let mut rows: BTreeMap<(String, i32), PartitionRow> = BTreeMap::new();
    for (topic, partition, offset) in committed {
        rows.insert(
            (topic.clone(), partition),
            PartitionRow {
                topic,
                partition,
                committed: Some(offset),
                log_end: None,
                member: None,
            },
        );
    }
    for m in &described.members {
        for (topic, partitions) in &m.assignment {
            for &partition in partitions {
                let row = rows
                    .entry((topic.clone(), partition))
                    .or_insert_with(|| PartitionRow {
                        topic: topic.clone(),
                        partition,
                        committed: None,
                        log_end: None,
                        member: None,
                    });
                row.member = Some((
                    m.member_id.clone(),
                    m.client_host.clone(),
                    m.client_id.clone(),
                ));
            }
        }
    }
    let mut rows: Vec<PartitionRow> = rows.into_values().collect();
    for row in &mut rows {
        // A deleted topic has no end; its row still shows the commit.
        row.log_end = routed
            .bootstrap
            .list_offset(&row.topic, row.partition, -1)
            .await
            .ok();
    }
    Ok(Described {
        group: described,
        rows,
    })
}

impl Described {
    fn to_json(&self) -> serde_json::Value {
        let g = &self.group;
        let members: Vec<serde_json::Value> = g
            .members
            .iter()
            .map(|m| {
                let assignment: Vec<serde_json::Value> = m
                    .assignment
                    .iter()
                    .map(|(t, ps)| serde_json::json!({"topic": t, "partitions": ps}))
                    .collect();
                serde_json::json!({
                    "member_id": m.member_id,
                    "instance_id": m.instance_id,
                    "client_id": m.client_id,
                    "host": m.client_host,
                    "assignment": assignment,
                })
            })
            .collect();
        let partitions: Vec<serde_json::Value> = self
            .rows
            .iter()
            .map(|r| {
                serde_json::json!({
                    "topic": r.topic,
                    "partition": r.partition,
                    "current_offset": r.committed,
                    "log_end_offset": r.log_end,
                    "lag": r.lag(),
                    "member_id": r.member.as_ref().map(|m| &m.0),
                    "host": r.member.as_ref().map(|m| &m.1),
                    "client_id": r.member.as_ref().map(|m| &m.2),
                })
            })
            .collect();
        serde_json::json!({
            "group": g.group_id,
            "state": g.state,
            "protocol_type": g.protocol_type,
            "protocol": g.protocol,
            "members": members,
            "partitions": partitions,
        })
    }

    fn write_table(&self, out: &mut impl Write) -> std::io::Result<()> {
        let g = &self.group;
        writeln!(
            out,
            "group {}  state {}  protocol-type {}  protocol {}  members {}",
            g.group_id,
            g.state,
            dash_if_empty(g.protocol_type.clone()),
            dash_if_empty(g.protocol.clone()),
            g.members.len()
        )?;
        if g.members.is_empty() {
            writeln!(
                out,
                "Consumer group '{}' has no active members.",
                g.group_id
            )?;
        }
        writeln!(out)?;
        let mut rows: Vec<Vec<String>> = self
            .rows
            .iter()
            .map(|r| {
                let (member, host, client) = r
                    .member
                    .clone()
                    .unwrap_or_else(|| ("-".into(), "-".into(), "-".into()));
                vec![
                    g.group_id.clone(),
                    r.topic.clone(),
                    r.partition.to_string(),
                    dash(r.committed),
                    dash(r.log_end),
                    dash(r.lag()),
                    member,
                    host,
                    client,
                ]
            })
            .collect();
        // Members with nothing assigned still show, as in kafka-consumer-groups.
        for m in g.members.iter().filter(|m| m.assignment.is_empty()) {
            rows.push(vec![
                g.group_id.clone(),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                m.member_id.clone(),
                m.client_host.clone(),
                m.client_id.clone(),
            ]);
        }
        write_table(
            out,
            &[
                "GROUP",
                "TOPIC",
                "PARTITION",
                "CURRENT-OFFSET",
                "LOG-END-OFFSET",
                "LAG",
                "CONSUMER-ID",
                "HOST",
                "CLIENT-ID",
            ],
            &rows,
        )
    }
}

#[derive(Debug, Clone, Copy)]
enum ResetTarget {
    Earliest,
    Latest,
    Datetime(i64),
    Offset(i64),
    ShiftBy(i64),
}

impl ResetArgs {
    fn target(&self) -> anyhow::Result<ResetTarget> {
        Ok(if self.to_earliest {
            ResetTarget::Earliest
        } else if self.to_latest {
            ResetTarget::Latest
        } else if let Some(ms) = self.to_datetime {
            ResetTarget::Datetime(ms)
        } else if let Some(o) = self.to_offset {
            ResetTarget::Offset(o)
        } else if let Some(n) = self.shift_by {
            ResetTarget::ShiftBy(n)
        } else {
            bail!("give one of --to-earliest, --to-latest, --to-datetime, --to-offset, --shift-by")
        })
    }
}

async fn reset_offsets(
    routed: &mut Routed<'_>,
    out: &mut impl Write,
    args: ResetArgs,
) -> anyhow::Result<()> {
    let target = args.target()?;
    let group = &args.group;
    let described = routed
        .call(async |c: &mut Client, g: &str| c.describe_group(g).await)
        .await?;
    if described.state != "Empty" && described.state != "Dead" {
        // kafka-consumer-groups' wording.
        bail!(
            "Assignments can only be reset if the group '{group}' is inactive, but the current \
             state is {}.",
            described.state
        );
    }
    let topics = routed.bootstrap.topics(Some(&[&args.topic])).await?;
    let Some(topic) = topics.first() else {
        bail!("no such topic {}", args.topic);
    };
    let partitions: Vec<i32> = match args.partition {
        Some(p) if (0..topic.partitions).contains(&p) => vec![p],
        Some(p) => bail!("topic {} has no partition {p}", args.topic),
        None => (0..topic.partitions).collect(),
    };
    let wanted: Vec<(String, i32)> = partitions
        .iter()
        .map(|p| (args.topic.clone(), *p))
        .collect();
    let current: BTreeMap<i32, i64> = routed
        .call(async |c: &mut Client, g: &str| c.fetch_offsets(g, Some(&wanted)).await)
        .await?
        .into_iter()
        .map(|(_, p, o)| (p, o))
        .collect();
    let mut plan = Vec::with_capacity(partitions.len());
    let client = &mut routed.bootstrap;
    for &p in &partitions {
        let earliest = client.list_offset(&args.topic, p, -2).await?;
        let latest = client.list_offset(&args.topic, p, -1).await?;
        let new = match target {
            ResetTarget::Earliest => earliest,
            ResetTarget::Latest => latest,
            ResetTarget::Datetime(ms) => match client.list_offset(&args.topic, p, ms).await? {
                o if o < 0 => latest,
                o => o,
            },
            ResetTarget::Offset(o) => o.clamp(earliest, latest),
            ResetTarget::ShiftBy(n) => {
                let Some(&c) = current.get(&p) else {
                    bail!(
                        "cannot shift the offset of {}-{p}: the group has no committed offset \
                         there",
                        args.topic
                    );
                };
                c.saturating_add(n).clamp(earliest, latest)
            }
        };
        plan.push((p, current.get(&p).copied(), new));
    }
    let rows: Vec<Vec<String>> = plan
        .iter()
        .map(|(p, c, n)| {
            vec![
                group.clone(),
                args.topic.clone(),
                p.to_string(),
                dash(*c),
                n.to_string(),
            ]
        })
        .collect();
    write_table(
        out,
        &[
            "GROUP",
            "TOPIC",
            "PARTITION",
            "CURRENT-OFFSET",
            "NEW-OFFSET",
        ],
        &rows,
    )?;
    if args.execute {
        let commits: Vec<(String, i32, i64)> = plan
            .iter()
            .map(|(p, _, n)| (args.topic.clone(), *p, *n))
            .collect();
        // From outside the group (no member id, generation -1): the coordinator only takes it
        // while the group has no members.
        routed
            .call(async |c: &mut Client, g: &str| c.commit_offsets(g, "", -1, &commits).await)
            .await
            .context("committing the new offsets")?;
        writeln!(out, "committed new offsets for group {group}")?;
    } else {
        eprintln!("dry run: nothing committed (add --execute to commit these offsets)");
    }
    Ok(())
}

/// What a group consumer does after handling one step.
enum Next {
    Rejoin,
    Stop,
}

/// `strom consume TOPIC --group GROUP`.
pub(crate) async fn consume(connect: &Connect, args: ConsumeArgs) -> anyhow::Result<()> {
    let Some(group) = args.group.clone() else {
        bail!("--group is required");
    };
    let mut fetcher = connect.client().await?;
    let topics = fetcher.topics(Some(&[&args.topic])).await?;
    let Some(info) = topics.first() else {
        bail!("no such topic {}", args.topic);
    };
    let counts: BTreeMap<String, i32> = [(args.topic.clone(), info.partitions)].into();
    let mut member = GroupMember::connect(
        &mut fetcher,
        &connect.bootstrap,
        &group,
        vec![args.topic.clone()],
        MemberTimeouts::default(),
    )
    .await?;
    let mut printed = 0usize;
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        let joined = tokio::select! {
            joined = member.join(&counts) => joined.cloned(),
            _ = &mut ctrl_c => {
                // The coordinator connection has a request in flight: leave on a fresh one.
                if !member.member_id().is_empty() {
                    let mut c = connect.client().await?;
                    let _ = c.leave_group(&group, member.member_id()).await;
                }
                return Ok(());
            }
        };
        let assignment = joined.with_context(|| format!("joining group {group}"))?;
        let assigned: Vec<i32> = assignment.get(&args.topic).cloned().unwrap_or_default();
        eprintln!(
            "joined group {group} generation {} as {}: assigned [{}]",
            member.generation(),
            member.member_id(),
            assigned
                .iter()
                .map(|p| format!("{}-{p}", args.topic))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let next = consume_generation(
            &mut fetcher,
            &mut member,
            &args,
            &assigned,
            &mut printed,
            &mut ctrl_c,
        )
        .await?;
        match next {
            Next::Rejoin => continue,
            Next::Stop => break,
        }
    }
    member
        .leave()
        .await
        .with_context(|| format!("leaving group {group}"))?;
    Ok(())
}

/// Consumes the partitions of one generation until the member must rejoin or stop.
async fn consume_generation(
    fetcher: &mut Client,
    member: &mut GroupMember,
    args: &ConsumeArgs,
    assigned: &[i32],
    printed: &mut usize,
    ctrl_c: &mut (impl std::future::Future<Output = std::io::Result<()>> + Unpin),
) -> anyhow::Result<Next> {
    let committed = member.committed().await?;
    // Position and "reached the end" per assigned partition.
    let mut positions: BTreeMap<i32, (i64, bool)> = BTreeMap::new();
    for &p in assigned {
        let start = match committed.get(&(args.topic.clone(), p)) {
            Some(&o) => o,
            None => crate::cli::resolve_start(fetcher, &args.topic, p, &args.from).await?,
        };
        positions.insert(p, (start, false));
    }
    let format = args.effective_format();
    let stdout = std::io::stdout();
    let mut turn = 0usize;
    loop {
        if args.count.is_some_and(|c| *printed >= c) {
            return Ok(Next::Stop);
        }
        if member.heartbeat_if_due().await? {
            return Ok(Next::Rejoin);
        }
        if !args.follow && positions.values().all(|(_, end)| *end) {
            return Ok(Next::Stop);
        }
        let wait = member.until_heartbeat().min(Duration::from_millis(500));
        if positions.is_empty() {
            // Nothing assigned: keep heartbeating until a rebalance or Ctrl-C.
            tokio::select! {
                () = tokio::time::sleep(wait) => continue,
                _ = &mut *ctrl_c => return Ok(Next::Stop),
            }
        }
        let keys: Vec<i32> = positions.keys().copied().collect();
        let p = keys[turn % keys.len()];
        turn = turn.wrapping_add(1);
        let (offset, _) = positions[&p];
        let max_wait = if args.follow {
            i32::try_from(wait.as_millis()).unwrap_or(500) / i32::try_from(keys.len()).unwrap_or(1)
        } else {
            0
        };
        let fetched = tokio::select! {
            f = fetcher.fetch(&args.topic, p, offset, max_wait, 4 << 20) => f,
            _ = &mut *ctrl_c => return Ok(Next::Stop),
        };
        let fetched = match fetched {
            Ok(f) => f,
            Err(e) if is_offset_out_of_range(&e) => {
                // auto.offset.reset=earliest: below the log start goes there, past the end to the end.
                let earliest = fetcher.list_offset(&args.topic, p, -2).await?;
                let reset = if offset < earliest {
                    earliest
                } else {
                    fetcher.list_offset(&args.topic, p, -1).await?
                };
                positions.insert(p, (reset, false));
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        if fetched.records.is_empty() {
            if offset >= fetched.high_watermark {
                positions.insert(p, (offset, true));
            }
            continue;
        }
        let next = print_batches(
            &mut stdout.lock(),
            fetched.records,
            offset,
            format,
            Some(p),
            args.count,
            printed,
        )?;
        positions.insert(p, (next, next >= fetched.high_watermark));
        if next > offset && !member.commit(&[(args.topic.clone(), p, next)]).await? {
            return Ok(Next::Rejoin);
        }
    }
}
