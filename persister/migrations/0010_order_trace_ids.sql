-- One trace per order (issue 18): the trace id the order's purchase request carried (its
-- W3C `traceparent` trace id, else its X-Request-Id, else one the gateway made), as the
-- envelope brought it. An operator reads it by order id and finds every log line of the order
-- by it (`span.trace_id` in the JSON logs of every binary). NULL for orders stored before.
ALTER TABLE orders
    ADD COLUMN trace_id VARCHAR(255) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NULL;
