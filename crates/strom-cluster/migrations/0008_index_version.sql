-- The version of a partition's batch index content (issue 17, lifecycle).
--
-- Compaction re-points index rows at rewritten batches with fewer records. Readers cache index
-- rows (and the bytes they name) per partition; the old objects stay readable for the delete
-- delay, and bytes already cached never miss, so a cached run would go on serving records the
-- cleaner removed. Compaction increments `index_version` in its commit transaction; a reader
-- reads it with the offsets on every fetch and drops its cached run when it moved.
ALTER TABLE strom_partitions ADD COLUMN index_version bigint NOT NULL DEFAULT 0;
