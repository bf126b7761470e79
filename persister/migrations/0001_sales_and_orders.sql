-- Sales and orders: the system of record behind the Redis admission.
-- The sales row guards the stock a second time (sold <= total), so a Redis failover that
-- lost writes can never oversell in MySQL.

CREATE TABLE sales (
    sale_id        BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
    sku            VARCHAR(64)     NOT NULL,
    title          VARCHAR(200)    NOT NULL,
    price          BIGINT UNSIGNED NOT NULL COMMENT 'integer minor units',
    total          INT UNSIGNED    NOT NULL COMMENT 'stock offered',
    sold           INT UNSIGNED    NOT NULL DEFAULT 0 COMMENT 'quantity of persisted, non-rejected orders',
    per_user_limit INT UNSIGNED    NOT NULL,
    starts_at      DATETIME(3)     NOT NULL,
    ends_at        DATETIME(3)     NOT NULL,
    status         VARCHAR(16)     NOT NULL DEFAULT 'active',
    created_at     DATETIME(3)     NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    updated_at     DATETIME(3)     NOT NULL DEFAULT CURRENT_TIMESTAMP(3) ON UPDATE CURRENT_TIMESTAMP(3),
    PRIMARY KEY (sale_id),
    KEY sales_by_window (status, ends_at),
    CONSTRAINT sales_sold_within_total CHECK (sold <= total),
    CONSTRAINT sales_window_ordered CHECK (ends_at > starts_at)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;

CREATE TABLE orders (
    order_id    VARCHAR(40)     NOT NULL,
    sale_id     BIGINT UNSIGNED NOT NULL,
    user_id     VARCHAR(64)     NOT NULL,
    quantity    INT UNSIGNED    NOT NULL,
    unit_price  BIGINT UNSIGNED NOT NULL COMMENT 'integer minor units',
    amount      BIGINT UNSIGNED NOT NULL COMMENT 'quantity * unit_price, minor units',
    status      VARCHAR(16)     NOT NULL COMMENT 'confirmed | paid | cancelled | expired | rejected',
    admitted_at DATETIME(3)     NOT NULL COMMENT 'when Redis admitted it',
    created_at  DATETIME(3)     NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    updated_at  DATETIME(3)     NOT NULL DEFAULT CURRENT_TIMESTAMP(3) ON UPDATE CURRENT_TIMESTAMP(3),
    PRIMARY KEY (order_id),
    KEY orders_by_user (user_id, admitted_at, order_id),
    KEY orders_by_sale (sale_id, status),
    CONSTRAINT orders_sale FOREIGN KEY (sale_id) REFERENCES sales (sale_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4;
