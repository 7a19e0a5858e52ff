//! What merging and compaction share: writing a new object as a flush does (recorded
//! `pending`, then PUT), and the transaction that points index rows at it.
//!
//! The new object goes through the same states as a flush's: should the rewrite fail or its
//! broker die between the PUT and the commit, the object stays `pending` and the orphan
//! collector removes it. The commit transaction first locks the job's lease row (`FOR SHARE`)
//! and checks it is still held at its epoch, so no other broker can take the lease and rewrite
//! the same rows until it ends; then it changes the rows and flips the object to `committed`.

use std::sync::Arc;

use bytes::Bytes;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use tokio_postgres::Transaction;

use crate::db::Db;
use crate::error::{DbOp, Error, Result, StoreOp};
use crate::lease::{self, Lease};

/// A fresh object key under `PREFIX/data/`, named as the writer names its flushes (uuid v7),
/// so the orphan collector's sweep covers it.
pub(crate) fn new_object_key(prefix: &str) -> String {
    let name = format!("data/{}.batches", uuid::Uuid::now_v7());
    if prefix.is_empty() {
        name
    } else {
        format!("{prefix}/{name}")
    }
}

/// Records `key` as a pending object written by `writer`, then uploads `bytes` to it.
pub(crate) async fn upload(
    db: &Db,
    store: &Arc<dyn ObjectStore>,
    writer: &str,
    key: &str,
    bytes: Bytes,
) -> Result<()> {
    let size = bytes.len() as i64;
    {
        let conn = db.conn().await?;
        conn.execute(
            "INSERT INTO strom_objects (key, size, state, writer) VALUES ($1, $2, 'pending', $3)",
            &[&key, &size, &writer],
        )
        .await
        .map_err(Error::pg(DbOp::RecordObject))?;
    }
    store
        .put(&Path::from(key), bytes.into())
        .await
        .map_err(Error::store(StoreOp::Put, Some(key)))?;
    Ok(())
}

/// Inside a transaction: locks the lease row and fails with [`Error::LeaseLost`] unless it is
/// still held at `lease`'s epoch.
pub(crate) async fn hold_lease(tx: &Transaction<'_>, lease: &Lease) -> Result<()> {
    let row = tx
        .query_opt(
            "SELECT 1 FROM strom_leases
             WHERE name = $1 AND holder = $2 AND epoch = $3 AND expires_at > now()
             FOR SHARE",
            &[&lease.name, &lease.holder, &lease.epoch],
        )
        .await
        .map_err(Error::pg(DbOp::Lifecycle))?;
    match row {
        Some(_) => Ok(()),
        None => Err(lease::lost(lease)),
    }
}

/// Inside a transaction: flips the pending object `key` to committed; fails with
/// [`Error::ObjectCollected`] when the orphan collector claimed it meanwhile.
pub(crate) async fn commit_object(tx: &Transaction<'_>, key: &str) -> Result<()> {
    let n = tx
        .execute(
            "UPDATE strom_objects SET state = 'committed' WHERE key = $1 AND state = 'pending'",
            &[&key],
        )
        .await
        .map_err(Error::pg(DbOp::Lifecycle))?;
    if n == 1 {
        Ok(())
    } else {
        Err(Error::ObjectCollected {
            key: key.to_owned(),
        })
    }
}

/// Downloads a whole object.
pub(crate) async fn get_object(store: &Arc<dyn ObjectStore>, key: &str) -> Result<Bytes> {
    let get = store
        .get(&Path::from(key))
        .await
        .map_err(Error::store(StoreOp::GetRange, Some(key)))?;
    get.bytes()
        .await
        .map_err(Error::store(StoreOp::GetRange, Some(key)))
}
