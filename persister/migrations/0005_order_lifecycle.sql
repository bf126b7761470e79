-- The order lifecycle (issue 14): a confirmed order holds its units until `pay_by`, then ends
-- paid, cancelled or expired — each end decided once in Redis, then stored here by the
-- persister. Every transition is a row of `order_history`, keyed by the event that made it, so
-- a replayed event writes nothing twice.

ALTER TABLE sales
    ADD COLUMN payment_window_seconds INT UNSIGNED NOT NULL DEFAULT 600
        COMMENT 'how long an admitted order may wait to be paid' AFTER per_user_limit,
    ADD CONSTRAINT sales_payment_window CHECK (payment_window_seconds BETWEEN 30 AND 86400);

-- The table's default collation is binary since 0004, so `close_reason` compares as bytes.
ALTER TABLE orders
    ADD COLUMN pay_by DATETIME(3) NULL
        COMMENT 'until when it may be paid (admission + the sale''s window, by Redis''s clock); null before windows existed'
        AFTER admitted_at,
    ADD COLUMN paid_at DATETIME(3) NULL AFTER pay_by,
    ADD COLUMN cancelled_at DATETIME(3) NULL AFTER paid_at,
    ADD COLUMN expired_at DATETIME(3) NULL AFTER cancelled_at,
    ADD COLUMN close_reason VARCHAR(200) NULL
        COMMENT 'why it ended: cancelled_by_shopper, a manager''s text, not_paid_in_time, paid_outside_flashgate'
        AFTER expired_at;

CREATE TABLE order_history (
    event_id    VARCHAR(120) NOT NULL COMMENT 'the event that made the transition: order.admitted:<id>, order.paid:<id>, ...',
    order_id    VARCHAR(40)  NOT NULL,
    from_status VARCHAR(16)  NOT NULL COMMENT 'reserved (admitted in Redis) | confirmed',
    to_status   VARCHAR(16)  NOT NULL COMMENT 'confirmed | rejected | paid | cancelled | expired',
    reason      VARCHAR(200) NULL     COMMENT 'why: a rejection''s code, an end''s reason',
    occurred_at DATETIME(3)  NOT NULL COMMENT 'when it happened (Redis''s clock)',
    recorded_at DATETIME(3)  NOT NULL DEFAULT CURRENT_TIMESTAMP(3) COMMENT 'when MySQL stored it',
    PRIMARY KEY (event_id),
    KEY order_history_by_order (order_id, occurred_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- The orders stored before this migration were admitted too: their first transition.
INSERT INTO order_history (event_id, order_id, from_status, to_status, reason, occurred_at)
SELECT CONCAT('order.admitted:', order_id), order_id, 'reserved', status, reject_reason, admitted_at
FROM orders
WHERE status IN ('confirmed', 'rejected');
