//! The metadata event log: every change to topics is one durable, append-only event.
//!
//! File: `<data-dir>/metadata/events.log`. One event per line, `<crc32c as 8 hex digits> <json>\n`,
//! where the CRC covers the JSON bytes. Each append is followed by `fdatasync`, so an event that
//! was acknowledged survives a crash. On open the whole file is replayed; a torn last line (no
//! newline, or a bad checksum on the last line) is cut off, anything bad before it is
//! [`Error::CorruptMetadata`]. This is the shape a replicated metadata log (cluster mode) will
//! take: the events are the state machine's commands.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::{Error, Result};

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
}

/// The append-only metadata event log. Owned by the broker behind its admin lock.
#[derive(Debug)]
pub(crate) struct MetadataLog {
    file: File,
    path: PathBuf,
}

const DIR: &str = "metadata";
const FILE: &str = "events.log";

/// The directory under the data dir that holds broker metadata (never a partition directory,
/// since those always end in `-<partition>`).
pub(crate) const METADATA_DIR: &str = DIR;

impl MetadataLog {
    /// Opens (creating if missing) the log under `data_dir` and returns it with every event.
    pub(crate) fn open(data_dir: &Path) -> Result<(MetadataLog, Vec<MetadataEvent>)> {
        let dir = data_dir.join(DIR);
        let path = dir.join(FILE);
        let created_dir = !dir.exists();
        std::fs::create_dir_all(&dir).map_err(|e| Error::metadata_io("create dir", &dir, e))?;
        if created_dir {
            sync_dir(data_dir)?;
        }
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
        let (events, valid_len) = parse(&content, &path)?;
        if valid_len < content.len() {
            tracing::warn!(
                path = %path.display(),
                torn_bytes = content.len() - valid_len,
                "truncating a torn metadata event at the end of the log"
            );
            file.set_len(valid_len as u64)
                .and_then(|()| file.sync_data())
                .map_err(|e| Error::metadata_io("truncate", &path, e))?;
        }
        Ok((MetadataLog { file, path }, events))
    }

    /// Appends one event and waits until it is on disk.
    pub(crate) fn append(&mut self, event: &MetadataEvent) -> Result<()> {
        let line = encode_line(event);
        self.file
            .write_all(&line)
            .and_then(|()| self.file.sync_data())
            .map_err(|e| Error::metadata_io("append", &self.path, e))
    }
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::metadata_io("fsync dir", dir, e))
}

fn encode_line(event: &MetadataEvent) -> Vec<u8> {
    // Serialising these plain enums cannot fail; fall back to an empty object defensively.
    let json = serde_json::to_vec(event).unwrap_or_else(|_| b"{}".to_vec());
    let mut line = format!("{:08x} ", crc32c::crc32c(&json)).into_bytes();
    line.extend_from_slice(&json);
    line.push(b'\n');
    line
}

/// Parses the file content; returns the events and the length of the valid prefix.
fn parse(content: &[u8], path: &Path) -> Result<(Vec<MetadataEvent>, usize)> {
    let mut events = Vec::new();
    let mut pos = 0;
    let mut line_no = 0;
    while pos < content.len() {
        line_no += 1;
        let rest = &content[pos..];
        let Some(nl) = rest.iter().position(|&b| b == b'\n') else {
            // No newline: a torn final write.
            return Ok((events, pos));
        };
        let line = &rest[..nl];
        let is_last = pos + nl + 1 == content.len();
        match decode_line(line) {
            Ok(ev) => events.push(ev),
            Err(reason) if is_last => {
                tracing::warn!(path = %path.display(), line = line_no, %reason, "bad last metadata line");
                return Ok((events, pos));
            }
            Err(reason) => {
                return Err(Error::CorruptMetadata {
                    path: path.to_path_buf(),
                    line: line_no,
                    reason,
                });
            }
        }
        pos += nl + 1;
    }
    Ok((events, pos))
}

fn decode_line(line: &[u8]) -> std::result::Result<MetadataEvent, String> {
    let (crc_hex, json) = match (line.get(..8), line.get(8), line.get(9..)) {
        (Some(c), Some(b' '), Some(j)) => (c, j),
        _ => return Err("line too short".to_owned()),
    };
    let crc_str = std::str::from_utf8(crc_hex).map_err(|_| "checksum is not hex".to_owned())?;
    let crc = u32::from_str_radix(crc_str, 16).map_err(|_| "checksum is not hex".to_owned())?;
    if crc != crc32c::crc32c(json) {
        return Err("checksum mismatch".to_owned());
    }
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

    #[test]
    fn append_and_replay() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, events) = MetadataLog::open(dir.path()).unwrap();
        assert!(events.is_empty());
        let a = created("a");
        let b = MetadataEvent::TopicDeleted { id: Uuid::new_v4() };
        log.append(&a).unwrap();
        log.append(&b).unwrap();
        drop(log);
        let (_, events) = MetadataLog::open(dir.path()).unwrap();
        assert_eq!(events, vec![a, b]);
    }

    #[test]
    fn torn_tail_is_truncated_but_middle_corruption_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = MetadataLog::open(dir.path()).unwrap();
        let a = created("a");
        log.append(&a).unwrap();
        drop(log);
        let path = dir.path().join(DIR).join(FILE);
        let mut content = std::fs::read(&path).unwrap();
        let good_len = content.len();
        content.extend_from_slice(b"0000abcd {\"event\":");
        std::fs::write(&path, &content).unwrap();
        let (mut log, events) = MetadataLog::open(dir.path()).unwrap();
        assert_eq!(events, vec![a.clone()]);
        assert_eq!(std::fs::metadata(&path).unwrap().len() as usize, good_len);
        log.append(&a).unwrap();
        drop(log);

        let mut content = std::fs::read(&path).unwrap();
        content[3] ^= 0x01; // flip a checksum digit of the first line
        std::fs::write(&path, &content).unwrap();
        assert!(matches!(
            MetadataLog::open(dir.path()),
            Err(Error::CorruptMetadata { line: 1, .. })
        ));
    }
}
