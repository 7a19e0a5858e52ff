//! [`LocalBackend`]: the single-node storage backend, everything under one data directory.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use strom_log::Clock;

use crate::error::Result;
use crate::metadata::{METADATA_DIR, MetadataEvent, MetadataLog};
use crate::storage::local::LocalPartitionStore;
use crate::storage::{
    LogConfig, MetadataStore, PartitionIndex, PartitionStore, StorageBackend, TopicPartition,
};
use crate::topic::validate_topic_name;

/// The single-node backend: `<data-dir>/<topic>-<partition>/` segment directories
/// ([`LocalPartitionStore`]) and the metadata event log in `<data-dir>/metadata/`
/// (`MetadataLog`). Every partition's `Always` appends share one commit window
/// ([`crate::durability::Durability`]).
#[derive(Debug)]
pub struct LocalBackend {
    data_dir: PathBuf,
    clock: Arc<dyn Clock>,
    durability: crate::durability::Durability,
}

impl LocalBackend {
    /// The backend for `data_dir`, created durably (its parent is fsynced) if missing.
    /// BLOCKING.
    pub fn open(data_dir: impl Into<PathBuf>, clock: Arc<dyn Clock>) -> Result<LocalBackend> {
        let data_dir = data_dir.into();
        strom_log::create_dir_durable(&data_dir)?;
        Ok(LocalBackend {
            data_dir,
            clock,
            durability: crate::durability::Durability::new(),
        })
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The commit window every partition's `Always` appends share.
    pub fn durability(&self) -> &crate::durability::Durability {
        &self.durability
    }
}

impl MetadataStore for MetadataLog {
    fn append(&mut self, event: &MetadataEvent) -> Result<()> {
        MetadataLog::append(self, event)
    }
}

impl StorageBackend for LocalBackend {
    fn open_metadata(&self) -> Result<(Box<dyn MetadataStore>, Vec<MetadataEvent>)> {
        let (log, events) = MetadataLog::open(&self.data_dir)?;
        Ok((Box::new(log), events))
    }

    fn open_partition(
        &self,
        partition: TopicPartition<'_>,
        config: LogConfig,
    ) -> Result<Arc<dyn PartitionStore>> {
        let dir = crate::partition_dir(&self.data_dir, partition.topic, partition.index.0);
        Ok(Arc::new(LocalPartitionStore::open(
            dir,
            config,
            Arc::clone(&self.clock),
            &self.durability,
        )?))
    }

    fn as_local(&self) -> Option<&LocalBackend> {
        Some(self)
    }

    fn remove_orphans(&self, is_live: &dyn Fn(&str, PartitionIndex) -> bool) {
        let Ok(entries) = std::fs::read_dir(&self.data_dir) else {
            return;
        };
        for entry in entries.flatten() {
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            if name == METADATA_DIR || !entry.path().is_dir() {
                continue;
            }
            let Some((topic, index)) = name.rsplit_once('-') else {
                continue;
            };
            let Ok(index) = index.parse::<i32>() else {
                continue;
            };
            if validate_topic_name(topic).is_err() {
                continue;
            }
            if !is_live(topic, PartitionIndex(index)) {
                tracing::warn!(dir = %entry.path().display(), "removing partition directory of a deleted topic");
                if let Err(e) = std::fs::remove_dir_all(entry.path()) {
                    tracing::warn!(dir = %entry.path().display(), error = %e, "could not remove");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_local_metadata_store_passes_the_conformance_suite() {
        let dir = tempfile::tempdir().unwrap();
        let backend = LocalBackend::open(dir.path(), Arc::new(crate::SystemClock)).unwrap();
        crate::storage::conformance::metadata_store_suite(&mut || backend.open_metadata().unwrap());
    }
}
