-- Leases on notification deliveries (issue 17): two notifier instances on one database must
-- never send one row twice. Each instance's sweep reads every due row, including those
-- another instance has in hand (sending, or waiting for its next attempt); before an attempt a
-- worker takes the row's lease (`owner` = its instance, `leased_until` = a moment after the
-- attempt's deadline) with one conditional UPDATE that succeeds only when the row is still
-- pending and its lease is free, lapsed, or already its own. A failed attempt keeps the lease
-- until after its next attempt is due, so the instance that waits for it keeps it; an instance
-- that dies leaves its rows to the others once their leases lapse.

ALTER TABLE notification_deliveries
    ADD COLUMN owner        VARCHAR(64) NULL COMMENT 'the notifier instance holding the lease',
    ADD COLUMN leased_until DATETIME(3) NULL COMMENT 'until when; NULL or past: free';
