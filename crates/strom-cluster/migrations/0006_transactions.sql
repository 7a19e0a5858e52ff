-- Transactions (KIP-98) in the cluster store, kept by the same commit transaction that assigns
-- offsets.
--
-- txn_first_offset: the first offset of the producer's open transaction in this partition
-- (NULL when none is open). The partition's last stable offset is the smallest of them (never
-- below the log start), else the high watermark.
-- coordinator_epoch: the coordinator epoch of the producer's last transaction marker, -1 if none
-- (DescribeProducers).
ALTER TABLE strom_producer_states ADD COLUMN txn_first_offset bigint;
ALTER TABLE strom_producer_states ADD COLUMN coordinator_epoch integer NOT NULL DEFAULT -1;
CREATE INDEX strom_producer_states_open_txn
    ON strom_producer_states (topic, partition, txn_first_offset)
    WHERE txn_first_offset IS NOT NULL;

-- The aborted-transaction index (Kafka's .txnindex): one row per transaction an ABORT marker
-- ended, from its first offset to the marker's. read_committed fetches return the rows
-- overlapping the range they read. Retention drops rows whose marker is below the log start;
-- compaction drops a row with its marker.
CREATE TABLE strom_aborted_txns (
    topic        text NOT NULL,
    partition    integer NOT NULL,
    producer_id  bigint NOT NULL,
    first_offset bigint NOT NULL,
    last_offset  bigint NOT NULL,
    PRIMARY KEY (topic, partition, last_offset),
    FOREIGN KEY (topic, partition) REFERENCES strom_partitions ON DELETE CASCADE
);
