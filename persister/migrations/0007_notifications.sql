-- Notifications (issue 17), owned by `flashgate-notifier`.
--
-- `user_contacts`: where a shopper is told things by email. An operator fills it (the
-- gateway never writes it); a user without a row is skipped by the email channel and counted
-- (`notifier_email_skipped_total`).
--
-- `notification_deliveries`: one row per (event, channel, target), written BEFORE the
-- consumer commits the event's offset and before anything is sent. It is the notifier's
-- memory: an event redelivered by Kafka (a restart, a rebalance, the same event published
-- again) finds its row and sends nothing; a delivery still `pending` when the notifier died is
-- resumed from here (the row keeps the event's body and where it came from). The row's
-- outcome is final once `sent` or `dead`; a `dead` row is revived once per dead-letter replay
-- (`replayed_by`, the replay header's value of the letter sent back to the source topic).
--
-- status: pending (to send; `next_attempt_at` is when) | sent | dead (attempts ran out; the
--         delivery was dead-lettered with `last_error` as its reason)

CREATE TABLE user_contacts (
    user_id    VARCHAR(64)  NOT NULL,
    email      VARCHAR(254) NULL COMMENT 'null or empty: the user gets no email',
    updated_at DATETIME(3)  NOT NULL DEFAULT CURRENT_TIMESTAMP(3) ON UPDATE CURRENT_TIMESTAMP(3),
    PRIMARY KEY (user_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE notification_deliveries (
    id               BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
    event_id         VARCHAR(255)    NOT NULL,
    channel          VARCHAR(16)     NOT NULL COMMENT 'webhook | email | slack',
    target           VARCHAR(255)    NOT NULL COMMENT 'the endpoint''s name (webhook, slack) or the address (email)',
    event_type       VARCHAR(64)     NOT NULL,
    status           VARCHAR(16)     NOT NULL DEFAULT 'pending',
    attempts         INT UNSIGNED    NOT NULL DEFAULT 0,
    last_error       VARCHAR(500)    NULL,
    next_attempt_at  DATETIME(3)     NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    source_topic     VARCHAR(249)    NOT NULL,
    source_partition INT             NOT NULL,
    source_offset    BIGINT          NOT NULL,
    message_key      VARBINARY(255)  NULL,
    payload          MEDIUMBLOB      NOT NULL COMMENT 'the event''s JSON envelope, as received',
    replayed_by      VARCHAR(255)    NULL COMMENT 'the dead-letter replay that revived it last',
    created_at       DATETIME(3)     NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    sent_at          DATETIME(3)     NULL,
    updated_at       DATETIME(3)     NOT NULL DEFAULT CURRENT_TIMESTAMP(3) ON UPDATE CURRENT_TIMESTAMP(3),
    PRIMARY KEY (id),
    UNIQUE KEY notification_once (event_id, channel, target),
    KEY notification_due (status, next_attempt_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
