-- Identifiers compare as bytes, as Redis and Rust compare them. Under a case- and
-- accent-insensitive collation (`utf8mb4_unicode_ci` in the local stack, `utf8mb4_0900_ai_ci`
-- by default in MySQL 8) `alice` and `Alice` were one user to MySQL and two to everything
-- else: they collided on unique keys and could read each other's rows. `utf8mb4_bin` makes
-- every identifier column (user, order, coupon, txid, reference) compare byte for byte.
-- Existing rows convert as they are: a binary collation only tells more values apart, so no
-- unique key can be broken by the change. The tables' default collation becomes binary too,
-- so a column added later without one is an exact identifier by default.
--
-- Also here: the reason a rejected order was refused (so a replay announces the same one), and
-- the table of events that arrived before the record they change.

ALTER TABLE orders
    DEFAULT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin,
    MODIFY order_id VARCHAR(40) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    MODIFY user_id VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    ADD COLUMN reject_reason VARCHAR(32) NULL
        COMMENT 'why a rejected order was refused: sold_out | per_user_limit' AFTER status;

ALTER TABLE point_ledger
    DEFAULT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin,
    MODIFY txid VARCHAR(80) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL
        COMMENT 'unique transaction id: earn:<order>, use:<id>, refund:<use txid>, ...',
    MODIFY user_id VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    MODIFY reference VARCHAR(80) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL
        COMMENT 'the order, or the transaction a refund reverses';

ALTER TABLE point_balances
    DEFAULT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin,
    MODIFY user_id VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL;

ALTER TABLE coupons
    DEFAULT CHARACTER SET utf8mb4 COLLATE utf8mb4_bin,
    MODIFY coupon_id VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    MODIFY user_id VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
    MODIFY order_id VARCHAR(40) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL
        COMMENT 'the order it is redeemed on';

-- Events that reached the persister before the record they change: a coupon's redemption or
-- its cancellation before the coupon, a refund of points before their use (several relays,
-- and a relay's re-send after a crash, can reorder one coupon's or one user's events). Such
-- an event waits here, written in its batch's transaction, and is applied (and its row
-- deleted) in the transaction that stores the record it waits for.
CREATE TABLE parked_events (
    waits_kind VARCHAR(8)   NOT NULL COMMENT 'coupon | use: what it waits for',
    waits_for  VARCHAR(80)  NOT NULL COMMENT 'the coupon id, or the txid of the use',
    event_key  VARCHAR(80)  NOT NULL COMMENT 'the change''s seq, or the refund''s txid',
    event_type VARCHAR(40)  NOT NULL COMMENT 'the envelope type, e.g. coupon.redeemed',
    data       TEXT         NOT NULL COMMENT 'the event''s data, as JSON',
    trace_id   VARCHAR(255) NOT NULL,
    parked_at  DATETIME(3)  NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    PRIMARY KEY (waits_kind, waits_for, event_key)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
