-- Secrets every broker of the cluster must share (the Kinesis shard-iterator key): the first
-- broker that asks stores its random candidate, every later one reads that value. Readable only
-- by whoever can read this database, never derived from anything a client sees.
CREATE TABLE strom_secrets (
    name       text PRIMARY KEY,
    value      bytea NOT NULL CHECK (octet_length(value) = 32),
    created_at timestamptz NOT NULL DEFAULT now()
);
