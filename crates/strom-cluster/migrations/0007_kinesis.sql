-- Kinesis across brokers (issue 18).
--
-- A shard closed by resharding is a sealed partition: `sealed_at` is the end offset the seal
-- fixed, set under the partition row's lock, so every commit transaction (which locks the same
-- row) either landed before it or sees it and refuses its data batches, whichever broker wrote
-- them. NULL while the partition takes data.
ALTER TABLE strom_partitions ADD COLUMN sealed_at bigint;

-- AWS-limits mode: each shard's token buckets, shared by every broker, so a shard's limits hold
-- for the cluster rather than per broker. A row is refilled and charged in one statement,
-- against the database's clock. UNLOGGED: after a crash of the server the buckets start full,
-- as they do after a broker restart on a single node.
CREATE UNLOGGED TABLE strom_kinesis_buckets (
    topic_id      uuid NOT NULL,
    shard         integer NOT NULL,
    write_records double precision NOT NULL,
    write_bytes   double precision NOT NULL,
    read_calls    double precision NOT NULL,
    read_bytes    double precision NOT NULL,
    refilled_at   timestamptz NOT NULL,
    PRIMARY KEY (topic_id, shard)
);
