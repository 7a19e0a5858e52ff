-- Lifecycle (retention, DeleteRecords, DeleteTopics, merging, compaction).
--
-- An object whose last index row went away (retention, DeleteRecords, a deleted topic, a merge
-- or a compaction that moved its batches) is 'retired' first and deleted only after a delay,
-- so a fetch that read its index row just before can still read its bytes (Kafka's
-- file.delete.delay.ms). The orphan collector ignores retired objects.
ALTER TABLE strom_objects DROP CONSTRAINT strom_objects_state_check;
ALTER TABLE strom_objects ADD CONSTRAINT strom_objects_state_check
    CHECK (state IN ('pending', 'committed', 'retired', 'deleting'));
ALTER TABLE strom_objects ADD COLUMN retired_at timestamptz;
CREATE INDEX strom_objects_retired ON strom_objects (retired_at) WHERE state = 'retired';

-- The last run of each background job, written by the broker that ran it under its lease.
CREATE TABLE strom_job_runs (
    name        text PRIMARY KEY,
    holder      text NOT NULL,
    epoch       bigint NOT NULL,
    started_at  timestamptz NOT NULL,
    finished_at timestamptz NOT NULL DEFAULT now(),
    ok          boolean NOT NULL,
    error       text,
    stats       jsonb NOT NULL DEFAULT '{}'::jsonb,
    runs        bigint NOT NULL DEFAULT 1
);

-- Compaction progress per partition: offsets below cleaned_offset were compacted;
-- tombstones_due_ms is when the earliest tombstone the last clean kept passes
-- delete.retention.ms (a clean is due then even with nothing dirty).
CREATE TABLE strom_compaction (
    topic             text NOT NULL,
    partition         integer NOT NULL,
    cleaned_offset    bigint NOT NULL,
    tombstones_due_ms bigint,
    PRIMARY KEY (topic, partition),
    FOREIGN KEY (topic, partition) REFERENCES strom_partitions ON DELETE CASCADE
);
