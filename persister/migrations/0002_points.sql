-- Points: an append-only ledger (the truth) and a balance per user derived from it.
-- The persister writes a ledger row and moves the balance in the same transaction; the nightly
-- `flashgate-batch reconcile-points` recomputes balances from the ledger and repairs drift.

CREATE TABLE point_ledger (
    entry_id   BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
    txid       VARCHAR(80)     NOT NULL COMMENT 'unique transaction id: earn:<order>, use:<id>, refund:<use txid>, ...',
    user_id    VARCHAR(64)     NOT NULL,
    delta      BIGINT          NOT NULL COMMENT 'points: positive earned or refunded, negative used',
    reason     VARCHAR(16)     NOT NULL COMMENT 'earn | use | refund | reverse | adjust',
    reference  VARCHAR(80)     NULL     COMMENT 'the order, or the transaction a refund reverses',
    created_at DATETIME(3)     NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    PRIMARY KEY (entry_id),
    UNIQUE KEY point_ledger_txid (txid),
    -- Covers the per-user sum of the reconciliation and the history page.
    KEY point_ledger_by_user (user_id, entry_id, delta)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

CREATE TABLE point_balances (
    user_id    VARCHAR(64)     NOT NULL,
    balance    BIGINT          NOT NULL,
    version    BIGINT UNSIGNED NOT NULL DEFAULT 0 COMMENT 'bumped by every change; the Redis cache records the version it reflects',
    updated_at DATETIME(3)     NOT NULL DEFAULT CURRENT_TIMESTAMP(3) ON UPDATE CURRENT_TIMESTAMP(3),
    PRIMARY KEY (user_id),
    CONSTRAINT point_balances_not_negative CHECK (balance >= 0)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;
