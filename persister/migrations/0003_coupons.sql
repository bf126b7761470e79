-- First-come coupons: policies (written by the manager API) and the coupons claimed from
-- them (written by the persister from the coupons topic). The policy row guards the quantity
-- a second time (issued <= total_quantity), and (policy, user, claim_no) is unique, so neither
-- a replay nor a Redis failover that lost writes can over-issue in MySQL.

CREATE TABLE coupon_policies (
    policy_id         BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
    name              VARCHAR(200)    NOT NULL,
    discount_kind     VARCHAR(8)      NOT NULL COMMENT 'amount | percent',
    discount_value    BIGINT UNSIGNED NOT NULL COMMENT 'minor units (amount) or 1..100 (percent)',
    min_order_amount  BIGINT UNSIGNED NULL     COMMENT 'minor units; null: any order',
    total_quantity    INT UNSIGNED    NOT NULL,
    issued            INT UNSIGNED    NOT NULL DEFAULT 0 COMMENT 'persisted, non-rejected coupons',
    per_user_limit    INT UNSIGNED    NOT NULL,
    claim_starts_at   DATETIME(3)     NOT NULL,
    claim_ends_at     DATETIME(3)     NOT NULL,
    valid_for_seconds INT UNSIGNED    NULL     COMMENT 'a coupon expires this long after its claim ...',
    expires_at        DATETIME(3)     NULL     COMMENT '... or every coupon expires at this instant',
    status            VARCHAR(16)     NOT NULL DEFAULT 'active' COMMENT 'active | paused | closed',
    created_at        DATETIME(3)     NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    updated_at        DATETIME(3)     NOT NULL DEFAULT CURRENT_TIMESTAMP(3) ON UPDATE CURRENT_TIMESTAMP(3),
    PRIMARY KEY (policy_id),
    CONSTRAINT coupon_policies_issued_within_total CHECK (issued <= total_quantity),
    CONSTRAINT coupon_policies_window_ordered CHECK (claim_ends_at > claim_starts_at),
    CONSTRAINT coupon_policies_one_expiry CHECK ((valid_for_seconds IS NULL) <> (expires_at IS NULL))
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

CREATE TABLE coupons (
    coupon_id   VARCHAR(64)     NOT NULL,
    policy_id   BIGINT UNSIGNED NOT NULL,
    user_id     VARCHAR(64)     NOT NULL,
    claim_no    INT UNSIGNED    NULL     COMMENT '1..per_user_limit; null when rejected',
    status      VARCHAR(16)     NOT NULL COMMENT 'issued | redeemed | rejected',
    seq         BIGINT UNSIGNED NOT NULL COMMENT 'the last applied change (issue is 1)',
    order_id    VARCHAR(40)     NULL     COMMENT 'the order it is redeemed on',
    discount    BIGINT UNSIGNED NULL     COMMENT 'discount granted, minor units',
    issued_at   DATETIME(3)     NOT NULL,
    expires_at  DATETIME(3)     NOT NULL,
    redeemed_at DATETIME(3)     NULL,
    created_at  DATETIME(3)     NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    updated_at  DATETIME(3)     NOT NULL DEFAULT CURRENT_TIMESTAMP(3) ON UPDATE CURRENT_TIMESTAMP(3),
    PRIMARY KEY (coupon_id),
    UNIQUE KEY coupons_one_per_claim (policy_id, user_id, claim_no),
    KEY coupons_by_user (user_id, issued_at, coupon_id),
    CONSTRAINT coupons_policy FOREIGN KEY (policy_id) REFERENCES coupon_policies (policy_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;
