-- Waiting rooms (issue 16): one row per sale created with a `queue`, written in the same
-- transaction as the sale. It holds the manager's settings (restored into Redis with the
-- sale), the draw's seed and commitment from creation on, and, once the draw has happened,
-- the ticket ids in position order: the draw's public record (`GET /v1/sales/{id}/queue/draw`,
-- `flashgate-batch verify-draw`), which outlives the sale's Redis keys.
--
-- The seed stays secret until `drawn_at` is set; only the commitment is shown before.

CREATE TABLE sale_queues (
    sale_id          BIGINT UNSIGNED NOT NULL,
    mode             VARCHAR(16)     NOT NULL COMMENT 'draw',
    opens_at         DATETIME(3)     NOT NULL COMMENT 'joining opens; before the sale''s starts_at',
    admit_per_second INT UNSIGNED    NOT NULL,
    max_active       INT UNSIGNED    NULL COMMENT 'most passes outstanding at once; NULL: no cap',
    paused           TINYINT(1)      NOT NULL DEFAULT 0 COMMENT 'admission paused by a manager',
    seed             CHAR(64)        NOT NULL COMMENT 'hex of 32 random bytes; secret until drawn',
    commitment       CHAR(64)        NOT NULL COMMENT 'hex(SHA-256(seed)), public from creation',
    drawn_at         DATETIME(3)     NULL,
    drawn_tickets    LONGTEXT        NULL COMMENT 'ticket ids in position order, one per line',
    PRIMARY KEY (sale_id)
) ENGINE = InnoDB;
