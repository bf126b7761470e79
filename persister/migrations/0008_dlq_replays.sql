-- The replays of dead letters (`flashgate-persister dlq replay`): one row per replay of a
-- letter, so the same letter is not sent back to its source topic twice by accident. The
-- first replay of a letter is number 1; the primary key lets only one operator (or one run)
-- claim it: a second `dlq replay` of the letter finds the row and refuses. `--again` claims
-- the next number. The row is claimed before the send and completed (`sent_*`) once the
-- broker acknowledged it; a claim whose send failed is deleted, and one left by a tool that
-- died in between stays without `sent_at` (a later replay says so and asks for `--again`).
CREATE TABLE dlq_replays (
    letter_topic     VARCHAR(249) NOT NULL COMMENT 'the dead-letter topic',
    letter_partition INT          NOT NULL COMMENT 'the letter''s partition there',
    letter_offset    BIGINT       NOT NULL COMMENT 'the letter''s offset there',
    replay_no        INT UNSIGNED NOT NULL COMMENT '1 for the first replay, 2 for the next (--again), ...',
    reason_code      VARCHAR(40)  NOT NULL COMMENT 'the letter''s reason, e.g. unknown_sale',
    source_topic     VARCHAR(249) NOT NULL COMMENT 'where the letter came from, and where it is sent back',
    source_partition INT          NOT NULL,
    source_offset    BIGINT       NOT NULL,
    claimed_at       DATETIME(3)  NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
    sent_partition   INT          NULL COMMENT 'where the broker stored the replay; NULL until it acknowledged it',
    sent_offset      BIGINT       NULL,
    sent_at          DATETIME(3)  NULL,
    PRIMARY KEY (letter_topic, letter_partition, letter_offset, replay_no)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
