-- Payments (issue 15): one row per order a shopper asked to pay, owned by `flashgate-saga`
-- (only it writes; the gateway reads it for `GET /v1/orders/{id}`). The row is the saga's
-- memory: every step is written before and after each provider call, so a saga that crashes
-- anywhere is resumed from here by any instance, and the provider's idempotency keys
-- (`charge_key`, `refund:<order>`) make a repeated call harmless.
--
-- No foreign key to `orders`: a payment request travels on its own topic and may arrive
-- before the persister has stored its order.
--
-- status: pending | charged | declined | giving_up | refunding   (the saga still has work)
--         completed | failed | given_up | refunded                (final; the outcome is
--         announced on the lifecycle topic, then `published_at` is set and `next_at` cleared)
-- Work is found by `next_at` alone (index `payments_due`): a row has a `next_at` exactly while
-- the saga has something left to do with it, so the ever-growing finished rows are never
-- scanned. `lease_owner`/`lease_until` make one instance own a row at a time.
-- Shown to shoppers: pending/charged/giving_up → pending; declined/failed → failed;
-- refunding → refund_pending; the others as they are.

CREATE TABLE payments (
    order_id      VARCHAR(40)     NOT NULL,
    sale_id       BIGINT UNSIGNED NOT NULL,
    user_id       VARCHAR(64)     NOT NULL,
    amount        BIGINT UNSIGNED NOT NULL COMMENT 'what to charge, integer minor units',
    payment_token VARCHAR(255)    NOT NULL COMMENT 'handed to the provider as is',
    status        VARCHAR(16)     NOT NULL,
    attempts      INT UNSIGNED    NOT NULL DEFAULT 0 COMMENT 'charge calls made (POST /charges)',
    retries       INT UNSIGNED    NOT NULL DEFAULT 0 COMMENT 'transient failures of the current step in a row: the backoff''s exponent',
    charge_key    VARCHAR(64)     NULL COMMENT 'idempotency key of the latest charge call: <order>:<attempt>',
    provider_ref  VARCHAR(255)    NULL COMMENT 'the provider''s charge id, once it succeeded',
    failure_code  VARCHAR(64)     NULL COMMENT 'why it failed: card_declined, invalid_token, payment_unanswered, ...',
    refund_ref    VARCHAR(255)    NULL COMMENT 'the provider''s refund id',
    refund_reason VARCHAR(200)    NULL COMMENT 'why it is refunded: the cancel''s reason, order_already_ended, payment_unanswered',
    refund_cause  VARCHAR(16)     NULL COMMENT 'cancel (a paid order cancelled: Redis `refunded` op after) | late (the charge outlived its order)',
    pay_by        DATETIME(3)     NOT NULL COMMENT 'the order''s pay_by (Redis''s clock)',
    give_up_at    DATETIME(3)     NOT NULL COMMENT 'pay_by + payments.grace_seconds: no charge attempt after it',
    next_at       DATETIME(3)     NULL COMMENT 'when the saga works on it next (a retry''s backoff); null once nothing is left to do',
    lease_owner   VARCHAR(80)     NULL COMMENT 'the saga instance (and claim) working on it',
    lease_until   DATETIME(3)     NULL COMMENT 'after it another instance may take it over',
    requested_at  DATETIME(3)     NOT NULL COMMENT 'when Redis took the request',
    charged_at    DATETIME(3)     NULL,
    refunded_at   DATETIME(3)     NULL,
    published_at  DATETIME(3)     NULL COMMENT 'when its final outcome was announced (null: still to announce)',
    trace_id      VARCHAR(255)    NOT NULL,
    created_at    DATETIME(3)     NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    updated_at    DATETIME(3)     NOT NULL DEFAULT CURRENT_TIMESTAMP(3) ON UPDATE CURRENT_TIMESTAMP(3),
    PRIMARY KEY (order_id),
    KEY payments_due (next_at),
    KEY payments_by_status (status, next_at),
    KEY payments_by_sale (sale_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
