-- Calm hand-backs (docs/cluster.md "Hand-over").
-- Since when a node has been up without its lease lapsing: a node is warm,
-- and may be handed shards back, only after being up a while.
ALTER TABLE cluster_nodes ADD COLUMN up_since_ms BIGINT NOT NULL DEFAULT 0;

-- Which nodes have a consumer registered on a shard's queue (active or
-- waiting). A node adds its row once the broker has its consumer and removes
-- it once the consumer is closed. A holder hands a shard over only when the
-- intended new owner is the one other consumer, so that the broker (which
-- activates the earliest-registered waiting consumer) activates that one.
CREATE TABLE shard_consumers (
    shard    INTEGER NOT NULL,
    node     TEXT    NOT NULL,
    since_ms BIGINT  NOT NULL,
    PRIMARY KEY (shard, node)
);
