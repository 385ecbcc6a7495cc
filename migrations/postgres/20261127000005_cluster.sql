-- Cluster membership: one row per node, renewed by its heartbeat. A node whose
-- lease ran out is dead to the others.
CREATE TABLE cluster_nodes (
    id             TEXT    PRIMARY KEY,
    addr           TEXT    NOT NULL,
    -- joining | up | leaving | left
    status         TEXT    NOT NULL,
    started_ms     BIGINT  NOT NULL,
    last_seen_ms   BIGINT  NOT NULL,
    lease_until_ms BIGINT  NOT NULL
);

-- Shard ownership with a fencing epoch: taking a shard bumps its epoch, and
-- every journal write names the epoch its writer holds, so a former owner can
-- never write again once the shard moved.
CREATE TABLE shard_owners (
    shard    INTEGER PRIMARY KEY,
    owner    TEXT,
    epoch    BIGINT  NOT NULL,
    since_ms BIGINT  NOT NULL
);
