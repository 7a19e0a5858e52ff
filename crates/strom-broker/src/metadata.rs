//! The metadata event log: every change to topics is one durable, append-only event, and a
//! snapshot keeps the log bounded by the live state rather than by history.
//!
//! ## Files (`<data-dir>/metadata/`)
//!
//! - `events.log`: one event per line, `<crc32c as 8 hex digits> <json>\n`, where the CRC covers
//!   the JSON bytes. Each append is followed by `fdatasync`, so an acknowledged event survives a
//!   crash. The first line of a log started by a snapshot is `log_started` with the snapshot's
//!   epoch; a log without it (written before snapshots existed) has epoch 0.
//! - `snapshot`: one line in the same `<crc> <json>\n` shape, the JSON being
//!   `{"epoch": n, "events": [...]}`: the minimal events that recreate the live state
//!   (`cluster_initialized`, `producer_ids_reserved` with the highest reservation, one
//!   `topic_created` per live topic with its current partition count and configs, one
//!   `stream_meta_set` per stream). Absent until the first snapshot (epoch 0).
//!
//! Opening reads the snapshot, then the log's events if the log's epoch equals the snapshot's.
//!
//! ## Snapshots
//!
//! After an append, when the events in the log exceed `max(1000, 2 × live events)`, the log is
//! compacted: (1) `events.log.tmp` is written with only `log_started { epoch + 1 }` and synced;
//! (2) `snapshot.tmp` with epoch + 1 is written, synced and renamed over `snapshot`, and the
//! directory synced; (3) `events.log.tmp` is renamed over `events.log` and the directory synced.
//! A crash before (2)'s rename leaves the old snapshot and the old log. A crash between (2) and
//! (3) leaves the new snapshot and the old log, whose epoch is now lower: its events are all in
//! the snapshot, so opening ignores it and starts a fresh log (no event is applied twice). A log
//! whose epoch is higher than the snapshot's (the snapshot was lost) is corruption. If (3)
//! fails in a running broker, the log refuses writes ([`Error::MetadataPoisoned`]) until the
//! broker is reopened, because appends to the old file would be ignored by the next start.
//!
//! ## Torn writes
//!
//! A failed append (disk full, I/O error) cuts the file back to its length before the append;
//! if that cut fails too, or the `fdatasync` failed (the file's state is then unknown), the log
//! refuses writes until reopened. Opening repairs what remains:
//!
//! - a last line without its newline, or whose checksum fails, is a write that was never
//!   acknowledged: it is cut off, with a warning;
//! - a line in the middle whose checksum fails is skipped, with an error-level log, only if it
//!   is exactly *a torn prefix of a line followed by a complete, valid line* (what an append that
//!   failed half-way and was not undone, followed by a successful one, leaves: the partial bytes
//!   run into the next line). The prefix must look like the start of a line (hex checksum
//!   digits, then a space, then `{`) and contain no newline. The valid line is kept and the log
//!   is rewritten clean (a snapshot is taken at once).
//! - anything else — a damaged line in the middle that is not such a prefix, e.g. a flipped bit
//!   in an acknowledged event — is [`Error::CorruptMetadata`]: replaying around a lost
//!   acknowledged event could resurrect a deleted topic or forget a created one, so the broker
//!   refuses to start rather than guess.
//!
//! This is the shape a replicated metadata log (cluster mode) will take: the events are the
//! state machine's commands, the snapshot its checkpoint.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::stream::StreamMeta;

/// One change to the cluster metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum MetadataEvent {
    /// The data dir was initialised for a new cluster.
    ClusterInitialized {
        /// The generated cluster id.
        cluster_id: String,
    },
    /// A topic was created.
    TopicCreated {
        /// Topic name.
        name: String,
        /// Topic id.
        id: Uuid,
        /// Partition count.
        partitions: i32,
        /// Config overrides.
        configs: BTreeMap<String, String>,
    },
    /// A topic grew to `total` partitions.
    PartitionsCreated {
        /// Topic id.
        id: Uuid,
        /// New partition count.
        total: i32,
    },
    /// A topic's config overrides were replaced.
    ConfigsSet {
        /// Topic id.
        id: Uuid,
        /// The complete new set of overrides.
        configs: BTreeMap<String, String>,
    },
    /// A topic was deleted.
    TopicDeleted {
        /// Topic id.
        id: Uuid,
    },
    /// Producer ids below `until` may have been handed out; after a restart allocation
    /// continues from `until`.
    ProducerIdsReserved {
        /// First producer id not yet reserved.
        until: i64,
    },
    /// The dynamic configs of the broker, the cluster default or a group were replaced (see
    /// [`crate::broker_config`]).
    DynamicConfigsSet {
        /// Whose configs.
        resource: crate::broker_config::DynamicResource,
        /// The complete new set.
        configs: BTreeMap<String, String>,
    },
    /// A topic's Kinesis stream metadata was replaced (see [`crate::stream`]).
    StreamMetaSet {
        /// Topic id.
        id: Uuid,
        /// The complete new metadata.
        stream: crate::stream::StreamMeta,
    },
    /// ACLs were stored (see [`crate::acl`]).
    AclsCreated {
        /// The new ACLs.
        acls: Vec<crate::acl::AclBinding>,
    },
    /// ACLs were deleted.
    AclsDeleted {
        /// The deleted ACLs.
        acls: Vec<crate::acl::AclBinding>,
    },
    /// SCRAM credentials were set or removed (see [`crate::scram`]); removals apply first.
    ScramCredentialsAltered {
        /// Credentials set (replacing any of the same user and mechanism).
        upserted: Vec<crate::scram::StoredScramCredential>,
        /// Credentials removed.
        removed: Vec<crate::scram::RemovedScramCredential>,
    },
    /// Client quotas were set or removed (see [`crate::quota`]), in order.
    ClientQuotasAltered {
        /// The changes.
        changes: Vec<crate::quota::QuotaChange>,
    },
    /// The first line of an `events.log` started by a snapshot: its events follow the snapshot
    /// of this epoch. Never returned by [`MetadataLog::open`].
    LogStarted {
        /// The epoch of the snapshot this log continues.
        epoch: u64,
    },
}

/// A topic as the live metadata state holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct LiveTopic {
    name: String,
    partitions: i32,
    configs: BTreeMap<String, String>,
}

/// The live state the events describe: what a snapshot stores. Both backends fold their event
/// logs into it to compact them (the local `snapshot` file, the cluster's snapshot row).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MetadataState {
    cluster_id: Option<String>,
    producer_ids_until: Option<i64>,
    topics: BTreeMap<Uuid, LiveTopic>,
    streams: BTreeMap<Uuid, StreamMeta>,
    /// Non-empty dynamic config layers (broker, cluster default, groups).
    dynamic: BTreeMap<crate::broker_config::DynamicResource, BTreeMap<String, String>>,
    /// Every ACL.
    acls: std::collections::BTreeSet<crate::acl::AclBinding>,
    /// Every SCRAM credential by user and mechanism.
    scram: BTreeMap<(String, crate::scram::ScramMechanism), crate::scram::ScramCredential>,
    /// Every client quota.
    quotas: crate::quota::QuotaMap,
}

impl MetadataState {
    /// Applies one event, as the broker's replay does.
    pub fn apply(&mut self, event: &MetadataEvent) {
        match event {
            MetadataEvent::ClusterInitialized { cluster_id } => {
                self.cluster_id = Some(cluster_id.clone());
            }
            MetadataEvent::TopicCreated {
                name,
                id,
                partitions,
                configs,
            } => {
                self.topics.insert(
                    *id,
                    LiveTopic {
                        name: name.clone(),
                        partitions: *partitions,
                        configs: configs.clone(),
                    },
                );
            }
            MetadataEvent::PartitionsCreated { id, total } => {
                if let Some(t) = self.topics.get_mut(id) {
                    t.partitions = *total;
                }
            }
            MetadataEvent::ConfigsSet { id, configs } => {
                if let Some(t) = self.topics.get_mut(id) {
                    t.configs = configs.clone();
                }
            }
            MetadataEvent::TopicDeleted { id } => {
                self.topics.remove(id);
                self.streams.remove(id);
            }
            MetadataEvent::ProducerIdsReserved { until } => {
                self.producer_ids_until = Some(self.producer_ids_until.unwrap_or(0).max(*until));
            }
            MetadataEvent::StreamMetaSet { id, stream } => {
                self.streams.insert(*id, stream.clone());
            }
            MetadataEvent::DynamicConfigsSet { resource, configs } => {
                if configs.is_empty() {
                    self.dynamic.remove(resource);
                } else {
                    self.dynamic.insert(resource.clone(), configs.clone());
                }
            }
            MetadataEvent::AclsCreated { acls } => {
                self.acls.extend(acls.iter().cloned());
            }
            MetadataEvent::AclsDeleted { acls } => {
                for acl in acls {
                    self.acls.remove(acl);
                }
            }
            MetadataEvent::ScramCredentialsAltered { upserted, removed } => {
                for r in removed {
                    self.scram.remove(&(r.user.clone(), r.mechanism));
                }
                for u in upserted {
                    self.scram
                        .insert((u.user.clone(), u.mechanism), u.credential.clone());
                }
            }
            MetadataEvent::ClientQuotasAltered { changes } => {
                crate::quota::apply_changes(&mut self.quotas, changes);
            }
            MetadataEvent::LogStarted { .. } => {}
        }
    }

    /// The fewest events that recreate this state.
    pub fn events(&self) -> Vec<MetadataEvent> {
        let mut out = Vec::with_capacity(2 + self.topics.len() + self.streams.len());
        if let Some(cluster_id) = &self.cluster_id {
            out.push(MetadataEvent::ClusterInitialized {
                cluster_id: cluster_id.clone(),
            });
        }
        if let Some(until) = self.producer_ids_until {
            out.push(MetadataEvent::ProducerIdsReserved { until });
        }
        for (id, t) in &self.topics {
            out.push(MetadataEvent::TopicCreated {
                name: t.name.clone(),
                id: *id,
                partitions: t.partitions,
                configs: t.configs.clone(),
            });
        }
        for (id, stream) in &self.streams {
            out.push(MetadataEvent::StreamMetaSet {
                id: *id,
                stream: stream.clone(),
            });
        }
        for (resource, configs) in &self.dynamic {
            out.push(MetadataEvent::DynamicConfigsSet {
                resource: resource.clone(),
                configs: configs.clone(),
            });
        }
        if !self.acls.is_empty() {
            out.push(MetadataEvent::AclsCreated {
                acls: self.acls.iter().cloned().collect(),
            });
        }
        if !self.scram.is_empty() {
            out.push(MetadataEvent::ScramCredentialsAltered {
                upserted: self
                    .scram
                    .iter()
                    .map(
                        |((user, mechanism), credential)| crate::scram::StoredScramCredential {
                            user: user.clone(),
                            mechanism: *mechanism,
                            credential: credential.clone(),
                        },
                    )
                    .collect(),
                removed: Vec::new(),
            });
        }
        if !self.quotas.is_empty() {
            out.push(MetadataEvent::ClientQuotasAltered {
                changes: self
                    .quotas
                    .iter()
                    .flat_map(|(entity, keys)| {
                        keys.iter().map(|(key, value)| crate::quota::QuotaChange {
                            entity: entity.clone(),
                            key: *key,
                            value: Some(*value),
                        })
                    })
                    .collect(),
            });
        }
        out
    }

    /// How many events [`MetadataState::events`] returns.
    pub fn size(&self) -> usize {
        usize::from(self.cluster_id.is_some())
            + usize::from(self.producer_ids_until.is_some())
            + self.topics.len()
            + self.streams.len()
            + self.dynamic.len()
            + self.acls.len()
            + self.scram.len()
            + self.quotas.len()
    }
}

/// The snapshot file's JSON.
#[derive(Debug, Serialize, Deserialize)]
struct Snapshot {
    epoch: u64,
    events: Vec<MetadataEvent>,
}

/// When the log is compacted into a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SnapshotPolicy {
    /// Never compact a log of fewer events than this (beyond twice the live state).
    pub(crate) min_events: usize,
}

impl Default for SnapshotPolicy {
    fn default() -> Self {
        SnapshotPolicy { min_events: 1000 }
    }
}

/// The append-only metadata event log. Owned by the broker behind its admin lock.
#[derive(Debug)]
pub(crate) struct MetadataLog {
    file: File,
    dir: PathBuf,
    path: PathBuf,
    /// Bytes of intact events in `file`.
    len: u64,
    /// The snapshot epoch this log continues.
    epoch: u64,
    /// The state after the snapshot and every event of the log.
    state: MetadataState,
    /// Events in the log (beyond its `log_started` line).
    log_events: usize,
    policy: SnapshotPolicy,
    /// Set when a failed write could not be undone: writes are refused until reopened.
    poisoned: bool,
}

const DIR: &str = "metadata";
const FILE: &str = "events.log";
const FILE_TMP: &str = "events.log.tmp";
const SNAPSHOT: &str = "snapshot";
const SNAPSHOT_TMP: &str = "snapshot.tmp";

/// The directory under the data dir that holds broker metadata (never a partition directory,
/// since those always end in `-<partition>`).
pub(crate) const METADATA_DIR: &str = DIR;

impl MetadataLog {
    /// Opens (creating if missing) the log under `data_dir` and returns it with the events that
    /// recreate the live state (the snapshot's, then the log's). BLOCKING.
    pub(crate) fn open(data_dir: &Path) -> Result<(MetadataLog, Vec<MetadataEvent>)> {
        MetadataLog::open_with(data_dir, SnapshotPolicy::default())
    }

    /// [`MetadataLog::open`] with a snapshot policy (tests use small thresholds).
    pub(crate) fn open_with(
        data_dir: &Path,
        policy: SnapshotPolicy,
    ) -> Result<(MetadataLog, Vec<MetadataEvent>)> {
        let dir = data_dir.join(DIR);
        let path = dir.join(FILE);
        // Durably: the parent of every directory created is fsynced (and the fault seam of
        // `strom_log` sees the creation).
        strom_log::create_dir_durable(&dir)?;
        // Leftovers of a compaction a crash interrupted before its renames.
        for tmp in [FILE_TMP, SNAPSHOT_TMP] {
            let tmp = dir.join(tmp);
            if tmp.exists() {
                std::fs::remove_file(&tmp).map_err(|e| Error::metadata_io("remove", &tmp, e))?;
            }
        }
        let (snapshot_epoch, mut state) = read_snapshot(&dir.join(SNAPSHOT))?;

        let existed = path.exists();
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(|e| Error::metadata_io("open", &path, e))?;
        if !existed {
            sync_dir(&dir)?;
        }
        let mut content = Vec::new();
        file.read_to_end(&mut content)
            .map_err(|e| Error::metadata_io("read", &path, e))?;
        let parsed = parse(&content, &path)?;
        if parsed.valid_len < content.len() {
            tracing::warn!(
                path = %path.display(),
                torn_bytes = content.len() - parsed.valid_len,
                "truncating a torn metadata event at the end of the log"
            );
            file.set_len(parsed.valid_len as u64)
                .and_then(|()| file.sync_data())
                .map_err(|e| Error::metadata_io("truncate", &path, e))?;
        }
        let mut events = parsed.events;
        let log_epoch = match events.first() {
            Some(MetadataEvent::LogStarted { epoch }) => {
                let epoch = *epoch;
                events.remove(0);
                epoch
            }
            _ => 0,
        };
        let mut log = MetadataLog {
            file,
            dir,
            path,
            len: parsed.valid_len as u64,
            epoch: snapshot_epoch,
            state: MetadataState::default(),
            log_events: 0,
            policy,
            poisoned: false,
        };
        let mut stale = false;
        match log_epoch.cmp(&snapshot_epoch) {
            std::cmp::Ordering::Equal => {
                for event in &events {
                    state.apply(event);
                }
                log.log_events = events.len();
            }
            std::cmp::Ordering::Less => {
                // A crash between installing a snapshot and starting its log: every event of
                // this log is already in the snapshot.
                tracing::warn!(
                    path = %log.path.display(),
                    log_epoch,
                    snapshot_epoch,
                    "metadata log predates the snapshot; starting a fresh log"
                );
                stale = true;
            }
            std::cmp::Ordering::Greater => {
                return Err(Error::CorruptMetadata {
                    path: log.dir.join(SNAPSHOT),
                    line: 1,
                    reason: format!(
                        "the log continues snapshot epoch {log_epoch} but the snapshot has epoch {snapshot_epoch}"
                    ),
                });
            }
        }
        log.state = state;
        if (stale || parsed.skipped_torn > 0)
            && let Err(e) = log.compact()
        {
            // A full disk must not stop the broker from starting: it opens read-only for
            // metadata. Appending to a stale log would be lost (the next open ignores it), so
            // metadata writes are refused until a reopen succeeds in starting a fresh log; a log
            // with a skipped torn prefix can take appends (the next open skips it again).
            tracing::error!(path = %log.path.display(), error = %e, "could not rewrite the metadata log");
            if stale {
                log.poisoned = true;
            }
        }
        let events = log.state.events();
        Ok((log, events))
    }

    /// Appends one event and waits until it is on disk; may then compact the log into a
    /// snapshot (a failed compaction is logged; the event itself is durable). BLOCKING.
    pub(crate) fn append(&mut self, event: &MetadataEvent) -> Result<()> {
        if self.poisoned {
            return Err(Error::MetadataPoisoned {
                path: self.path.clone(),
            });
        }
        let line = encode_line(event);
        if let Err(e) = self.file.write_all(&line) {
            // Undo whatever part of the line reached the file, so no torn line is left in the
            // middle of the log once later appends succeed.
            if let Err(undo) = self.file.set_len(self.len) {
                tracing::error!(path = %self.path.display(), error = %undo, "could not undo a partial metadata write; refusing metadata writes until reopened");
                self.poisoned = true;
            }
            return Err(Error::metadata_io("append", &self.path, e));
        }
        if let Err(e) = self.file.sync_data() {
            // After a failed fdatasync the kernel may have dropped the dirty pages: what is on
            // disk is unknown, so the next open decides.
            tracing::error!(path = %self.path.display(), error = %e, "metadata fdatasync failed; refusing metadata writes until reopened");
            self.poisoned = true;
            return Err(Error::metadata_io("fdatasync", &self.path, e));
        }
        self.len += line.len() as u64;
        self.state.apply(event);
        self.log_events += 1;
        if self.log_events > self.policy.min_events.max(2 * self.state.size())
            && let Err(e) = self.compact()
        {
            tracing::warn!(path = %self.path.display(), error = %e, "metadata snapshot failed");
        }
        Ok(())
    }

    /// Writes a snapshot of the live state and starts a fresh log after it (see the module
    /// docs for the order of steps and why every crash point is safe). BLOCKING.
    fn compact(&mut self) -> Result<()> {
        let epoch = self.epoch + 1;
        let log_tmp = self.dir.join(FILE_TMP);
        let header = encode_line(&MetadataEvent::LogStarted { epoch });
        write_synced(&log_tmp, &header)?;
        let snapshot = Snapshot {
            epoch,
            events: self.state.events(),
        };
        let json = serde_json::to_vec(&snapshot).map_err(|e| Error::CorruptMetadata {
            path: self.dir.join(SNAPSHOT),
            line: 1,
            reason: format!("snapshot not encodable: {e}"),
        })?;
        let snapshot_tmp = self.dir.join(SNAPSHOT_TMP);
        let snapshot_path = self.dir.join(SNAPSHOT);
        write_synced(&snapshot_tmp, &frame(&json))?;
        std::fs::rename(&snapshot_tmp, &snapshot_path)
            .map_err(|e| Error::metadata_io("rename", &snapshot_path, e))?;
        // From here the old log is stale: appending to it would be ignored by the next open.
        let installed = sync_dir(&self.dir)
            .and_then(|()| {
                std::fs::rename(&log_tmp, &self.path)
                    .map_err(|e| Error::metadata_io("rename", &self.path, e))
            })
            .and_then(|()| sync_dir(&self.dir))
            .and_then(|()| {
                OpenOptions::new()
                    .append(true)
                    .open(&self.path)
                    .map_err(|e| Error::metadata_io("open", &self.path, e))
            });
        match installed {
            Ok(file) => {
                self.file = file;
                self.len = header.len() as u64;
                self.epoch = epoch;
                self.log_events = 0;
                tracing::info!(
                    epoch,
                    live_events = snapshot.events.len(),
                    "metadata log compacted into a snapshot"
                );
                Ok(())
            }
            Err(e) => {
                tracing::error!(path = %self.path.display(), error = %e, "metadata snapshot installed without its fresh log; refusing metadata writes until reopened");
                self.poisoned = true;
                Err(e)
            }
        }
    }
}

/// Reads `snapshot`: its epoch and state (epoch 0 and the empty state if absent).
fn read_snapshot(path: &Path) -> Result<(u64, MetadataState)> {
    let content = match std::fs::read(path) {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok((0, MetadataState::default()));
        }
        Err(e) => return Err(Error::metadata_io("read", path, e)),
    };
    let corrupt = |reason: String| Error::CorruptMetadata {
        path: path.to_path_buf(),
        line: 1,
        reason,
    };
    let line = content
        .strip_suffix(b"\n")
        .ok_or_else(|| corrupt("snapshot without its final newline".to_owned()))?;
    let json = unframe(line).map_err(corrupt)?;
    let snapshot: Snapshot =
        serde_json::from_slice(json).map_err(|e| corrupt(format!("bad snapshot: {e}")))?;
    let mut state = MetadataState::default();
    for event in &snapshot.events {
        state.apply(event);
    }
    Ok((snapshot.epoch, state))
}

/// Writes `bytes` to a new file at `path` and syncs it.
fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    File::create(path)
        .and_then(|mut f| f.write_all(bytes).and_then(|()| f.sync_data()))
        .map_err(|e| Error::metadata_io("write", path, e))
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::metadata_io("fsync dir", dir, e))
}

/// `<crc32c as 8 hex digits> <json>\n`.
fn frame(json: &[u8]) -> Vec<u8> {
    let mut line = format!("{:08x} ", crc32c::crc32c(json)).into_bytes();
    line.extend_from_slice(json);
    line.push(b'\n');
    line
}

fn encode_line(event: &MetadataEvent) -> Vec<u8> {
    // Serialising these plain enums cannot fail; fall back to an empty object defensively.
    let json = serde_json::to_vec(event).unwrap_or_else(|_| b"{}".to_vec());
    frame(&json)
}

/// What [`parse`] found.
#[derive(Debug)]
struct Parsed {
    events: Vec<MetadataEvent>,
    /// Length of the prefix that holds complete lines (a torn last line is beyond it).
    valid_len: usize,
    /// Torn prefixes skipped in the middle.
    skipped_torn: usize,
}

/// Parses the file content (see the module docs for what is repaired and what is corrupt).
fn parse(content: &[u8], path: &Path) -> Result<Parsed> {
    let mut events = Vec::new();
    let mut skipped_torn = 0;
    let mut pos = 0;
    let mut line_no = 0;
    while pos < content.len() {
        line_no += 1;
        let rest = &content[pos..];
        let Some(nl) = rest.iter().position(|&b| b == b'\n') else {
            // No newline: a torn final write.
            break;
        };
        let line = &rest[..nl];
        let is_last = pos + nl + 1 == content.len();
        match decode_line(line) {
            Ok(ev) => events.push(ev),
            Err(reason) => {
                if let Some((torn, ev)) = split_torn(line) {
                    tracing::error!(
                        path = %path.display(),
                        line = line_no,
                        torn_bytes = torn,
                        %reason,
                        "skipping the torn prefix of a metadata write that failed; the event after it is kept"
                    );
                    skipped_torn += 1;
                    events.push(ev);
                } else if is_last {
                    tracing::warn!(path = %path.display(), line = line_no, %reason, "bad last metadata line");
                    break;
                } else {
                    return Err(Error::CorruptMetadata {
                        path: path.to_path_buf(),
                        line: line_no,
                        reason,
                    });
                }
            }
        }
        pos += nl + 1;
    }
    Ok(Parsed {
        events,
        valid_len: pos,
        skipped_torn,
    })
}

/// Whether `line` is a torn prefix of a line run into a complete valid line: returns the
/// prefix length and the valid line's event.
fn split_torn(line: &[u8]) -> Option<(usize, MetadataEvent)> {
    (1..line.len()).find_map(|at| {
        let (prefix, suffix) = line.split_at(at);
        if !looks_like_line_start(prefix) {
            return None;
        }
        decode_line(suffix).ok().map(|ev| (at, ev))
    })
}

/// Whether `prefix` could be the beginning of an encoded line: up to 8 hex digits, then a
/// space, then a JSON object.
fn looks_like_line_start(prefix: &[u8]) -> bool {
    prefix.iter().enumerate().all(|(i, &b)| match i {
        0..8 => b.is_ascii_hexdigit(),
        8 => b == b' ',
        9 => b == b'{',
        _ => b != b'\n',
    })
}

/// The JSON of a framed line whose checksum matches.
fn unframe(line: &[u8]) -> std::result::Result<&[u8], String> {
    let (crc_hex, json) = match (line.get(..8), line.get(8), line.get(9..)) {
        (Some(c), Some(b' '), Some(j)) => (c, j),
        _ => return Err("line too short".to_owned()),
    };
    let crc_str = std::str::from_utf8(crc_hex).map_err(|_| "checksum is not hex".to_owned())?;
    let crc = u32::from_str_radix(crc_str, 16).map_err(|_| "checksum is not hex".to_owned())?;
    if crc != crc32c::crc32c(json) {
        return Err("checksum mismatch".to_owned());
    }
    Ok(json)
}

fn decode_line(line: &[u8]) -> std::result::Result<MetadataEvent, String> {
    let json = unframe(line)?;
    serde_json::from_slice(json).map_err(|e| format!("bad event: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn created(name: &str) -> MetadataEvent {
        MetadataEvent::TopicCreated {
            name: name.to_owned(),
            id: Uuid::new_v4(),
            partitions: 3,
            configs: BTreeMap::from([("retention.ms".to_owned(), "1000".to_owned())]),
        }
    }

    fn replayed(events: &[MetadataEvent]) -> MetadataState {
        let mut state = MetadataState::default();
        for e in events {
            state.apply(e);
        }
        state
    }

    fn log_path(dir: &Path) -> PathBuf {
        dir.join(DIR).join(FILE)
    }

    #[test]
    fn append_and_replay() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, events) = MetadataLog::open(dir.path()).unwrap();
        assert!(events.is_empty());
        let a = created("a");
        let b = created("b");
        let MetadataEvent::TopicCreated { id: b_id, .. } = b.clone() else {
            unreachable!()
        };
        log.append(&a).unwrap();
        log.append(&b).unwrap();
        log.append(&MetadataEvent::TopicDeleted { id: b_id })
            .unwrap();
        drop(log);
        let (_, events) = MetadataLog::open(dir.path()).unwrap();
        assert_eq!(events, vec![a]);
    }

    #[test]
    fn torn_tail_is_truncated_but_middle_corruption_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = MetadataLog::open(dir.path()).unwrap();
        let a = created("a");
        log.append(&a).unwrap();
        drop(log);
        let path = log_path(dir.path());
        let mut content = std::fs::read(&path).unwrap();
        let good_len = content.len();
        content.extend_from_slice(b"0000abcd {\"event\":");
        std::fs::write(&path, &content).unwrap();
        let (mut log, events) = MetadataLog::open(dir.path()).unwrap();
        assert_eq!(events, vec![a.clone()]);
        assert_eq!(std::fs::metadata(&path).unwrap().len() as usize, good_len);
        let b = created("b");
        log.append(&b).unwrap();
        drop(log);

        // A flipped bit in an acknowledged event (not a torn prefix) stops the open.
        let mut content = std::fs::read(&path).unwrap();
        content[3] ^= 0x01; // a checksum digit of the first line
        std::fs::write(&path, &content).unwrap();
        assert!(matches!(
            MetadataLog::open(dir.path()),
            Err(Error::CorruptMetadata { line: 1, .. })
        ));
        content[3] ^= 0x01;
        let json_byte = content.iter().position(|&b| b == b'{').unwrap() + 3;
        content[json_byte] ^= 0x20;
        std::fs::write(&path, &content).unwrap();
        assert!(matches!(
            MetadataLog::open(dir.path()),
            Err(Error::CorruptMetadata { line: 1, .. })
        ));
    }

    /// A write that failed half-way and was not undone, followed by successful appends, leaves
    /// a torn line in the middle: the open keeps every acknowledged event and rewrites the file.
    #[test]
    fn torn_prefix_in_the_middle_is_skipped_and_the_log_rewritten() {
        let a = created("a");
        let lost = created("lost");
        let b = created("b");
        let c = created("c");
        let full_lost = encode_line(&lost);
        // Every cut of the lost line: empty JSON, mid-checksum, mid-JSON, all but the newline.
        for cut in [3, 8, 9, 10, full_lost.len() / 2, full_lost.len() - 1] {
            let dir = tempfile::tempdir().unwrap();
            std::fs::create_dir_all(dir.path().join(DIR)).unwrap();
            let mut content = encode_line(&a);
            content.extend_from_slice(&full_lost[..cut]);
            content.extend_from_slice(&encode_line(&b));
            content.extend_from_slice(&encode_line(&c));
            std::fs::write(log_path(dir.path()), &content).unwrap();
            let (mut log, events) = MetadataLog::open(dir.path()).unwrap();
            assert_eq!(
                replayed(&events),
                replayed(&[a.clone(), b.clone(), c.clone()]),
                "cut at {cut}"
            );
            let d = created("d");
            log.append(&d).unwrap();
            drop(log);
            // Rewritten clean: nothing to skip any more, and the new event is there.
            let parsed = parse(
                &std::fs::read(log_path(dir.path())).unwrap(),
                Path::new("x"),
            )
            .unwrap();
            assert_eq!(parsed.skipped_torn, 0);
            let (_, events) = MetadataLog::open(dir.path()).unwrap();
            assert_eq!(
                replayed(&events),
                replayed(&[a.clone(), b.clone(), c.clone(), d]),
            );
        }
    }

    /// A write that fails and cannot be undone poisons the log: later writes are refused with
    /// a typed error (not appended after a possibly torn line), and a reopen repairs it.
    #[test]
    fn a_failed_write_that_cannot_be_undone_poisons_until_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = MetadataLog::open(dir.path()).unwrap();
        let a = created("a");
        log.append(&a).unwrap();
        // A read-only handle: the write fails, and so does the undo (set_len).
        log.file = File::open(log_path(dir.path())).unwrap();
        assert!(matches!(
            log.append(&created("x")),
            Err(Error::Metadata { op: "append", .. })
        ));
        assert!(matches!(
            log.append(&created("y")),
            Err(Error::MetadataPoisoned { .. })
        ));
        drop(log);
        let (mut log, events) = MetadataLog::open(dir.path()).unwrap();
        assert_eq!(events, vec![a.clone()]);
        let b = created("b");
        log.append(&b).unwrap();
        drop(log);
        let (_, events) = MetadataLog::open(dir.path()).unwrap();
        assert_eq!(replayed(&events), replayed(&[a, b]));
    }

    /// A tiny deterministic generator (xorshift).
    struct Rng(u64);
    impl Rng {
        fn below(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0 % n.max(1)
        }
    }

    fn random_event(rng: &mut Rng, ids: &mut Vec<Uuid>) -> MetadataEvent {
        let pick = |rng: &mut Rng, ids: &Vec<Uuid>| {
            if ids.is_empty() || rng.below(10) == 0 {
                Uuid::new_v4()
            } else {
                ids[rng.below(ids.len() as u64) as usize]
            }
        };
        match rng.below(9) {
            0 | 1 => {
                let id = Uuid::new_v4();
                ids.push(id);
                MetadataEvent::TopicCreated {
                    name: format!("t{}", rng.below(1000)),
                    id,
                    partitions: 1 + rng.below(4) as i32,
                    configs: BTreeMap::new(),
                }
            }
            2 => MetadataEvent::TopicDeleted { id: pick(rng, ids) },
            3 => MetadataEvent::PartitionsCreated {
                id: pick(rng, ids),
                total: 1 + rng.below(9) as i32,
            },
            4 => MetadataEvent::ConfigsSet {
                id: pick(rng, ids),
                configs: BTreeMap::from([("retention.ms".to_owned(), rng.below(99).to_string())]),
            },
            5 => MetadataEvent::ProducerIdsReserved {
                until: rng.below(100_000) as i64,
            },
            6 => MetadataEvent::StreamMetaSet {
                id: pick(rng, ids),
                stream: StreamMeta::derived(1 + rng.below(3) as i32, None),
            },
            7 => {
                use crate::broker_config::DynamicResource;
                let resource = match rng.below(3) {
                    0 => DynamicResource::Broker,
                    1 => DynamicResource::ClusterDefault,
                    _ => DynamicResource::Group {
                        group: format!("g{}", rng.below(3)),
                    },
                };
                // Empty sets too: they clear the layer.
                let configs = (0..rng.below(3))
                    .map(|i| (format!("k{i}"), rng.below(99).to_string()))
                    .collect();
                MetadataEvent::DynamicConfigsSet { resource, configs }
            }
            _ => MetadataEvent::ClusterInitialized {
                cluster_id: format!("c{}", rng.below(3)),
            },
        }
    }

    /// For random histories, the snapshot's events replay to the state of the whole history,
    /// and a log compacted many times reopens to it.
    #[test]
    fn snapshots_replay_to_the_state_of_the_whole_history() {
        for seed in 1..=6u64 {
            let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
            let mut ids = Vec::new();
            let history: Vec<MetadataEvent> =
                (0..300).map(|_| random_event(&mut rng, &mut ids)).collect();
            let whole = replayed(&history);
            assert_eq!(replayed(&whole.events()), whole, "seed {seed}");

            let dir = tempfile::tempdir().unwrap();
            let policy = SnapshotPolicy { min_events: 20 };
            let (mut log, _) = MetadataLog::open_with(dir.path(), policy).unwrap();
            for (i, e) in history.iter().enumerate() {
                log.append(e).unwrap();
                if i % 97 == 0 {
                    drop(log);
                    let (reopened, events) = MetadataLog::open_with(dir.path(), policy).unwrap();
                    assert_eq!(replayed(&events), replayed(&history[..=i]));
                    log = reopened;
                }
            }
            assert!(log.epoch > 0, "seed {seed}: the log was compacted");
            drop(log);
            let lines = std::fs::read(log_path(dir.path())).unwrap();
            assert!(lines.iter().filter(|&&b| b == b'\n').count() <= 20 + 1 + 2 * whole.size());
            let (_, events) = MetadataLog::open_with(dir.path(), policy).unwrap();
            assert_eq!(replayed(&events), whole, "seed {seed}");
        }
    }

    /// Every crash point of a compaction opens to the same state, and appends after it survive.
    #[test]
    fn a_crash_at_any_step_of_a_compaction_is_safe() {
        let policy = SnapshotPolicy { min_events: 5 };
        let history: Vec<MetadataEvent> = (0..5).map(|i| created(&format!("t{i}"))).collect();
        let meta = |d: &Path| d.join(DIR);
        // Before the compaction: events.log holds 5 events, no snapshot.
        let prepare = || {
            let dir = tempfile::tempdir().unwrap();
            let (mut log, _) = MetadataLog::open_with(dir.path(), policy).unwrap();
            for e in &history {
                log.append(e).unwrap();
            }
            assert_eq!(log.epoch, 0);
            dir
        };
        let compacted = |d: &Path| {
            let (mut log, _) = MetadataLog::open_with(d, policy).unwrap();
            log.compact().unwrap();
        };
        type Crash = fn(&Path, &Path);
        let crashes: [(&str, Crash); 3] = [
            // Step 1 done, step 2 not renamed: the temporary files are left over.
            ("temporaries left", |m, _| {
                std::fs::write(
                    m.join(FILE_TMP),
                    encode_line(&MetadataEvent::LogStarted { epoch: 1 }),
                )
                .unwrap();
                std::fs::write(m.join(SNAPSHOT_TMP), b"garbage").unwrap();
            }),
            // Step 2 renamed, step 3 not: the new snapshot with the old log.
            ("snapshot without its log", |m, old_log| {
                std::fs::copy(old_log, m.join(FILE)).unwrap();
            }),
            // Everything done.
            ("complete", |_, _| {}),
        ];
        for (name, crash) in crashes {
            let dir = prepare();
            let old_log = dir.path().join("old.log");
            std::fs::copy(log_path(dir.path()), &old_log).unwrap();
            if name != "temporaries left" {
                compacted(dir.path());
            }
            crash(&meta(dir.path()), &old_log);
            let (mut log, events) = MetadataLog::open_with(dir.path(), policy).unwrap();
            assert_eq!(replayed(&events), replayed(&history), "{name}");
            let extra = created("extra");
            log.append(&extra).unwrap();
            drop(log);
            let (_, events) = MetadataLog::open_with(dir.path(), policy).unwrap();
            let mut all = history.clone();
            all.push(extra);
            assert_eq!(replayed(&events), replayed(&all), "{name}");
        }

        // A log newer than its snapshot (the snapshot was lost) is corruption.
        let dir = prepare();
        compacted(dir.path());
        std::fs::remove_file(meta(dir.path()).join(SNAPSHOT)).unwrap();
        assert!(matches!(
            MetadataLog::open_with(dir.path(), policy),
            Err(Error::CorruptMetadata { .. })
        ));
    }
}
