//! Deliveries off the consumer's path: each endpoint holds at most `queue_per_endpoint`
//! deliveries in memory and sends at most `concurrency_per_endpoint` at once, behind its own
//! circuit breaker; a delivery that does not fit waits in MySQL (`pending`) for the sweep,
//! which also resumes what a stopped or killed notifier left. A failed attempt is written
//! down with the time of the next one (capped exponential backoff with jitter); the last one
//! sends the delivery to the dead-letter topic, then marks its row `dead`.
//!
//! One delivery is in hand at most once per process (`in_hand`): the sweep skips the rows
//! being worked on; and at most once across instances on one database: each attempt is made
//! under the row's lease (`owner`, `leased_until`), taken by one conditional UPDATE. A
//! delivery sent while the notifier dies before its row says `sent` is sent again after the
//! restart (the receiver drops it by its event id).
//!
//! The parts: `dispatcher` takes deliveries in hand and sweeps MySQL for due ones; `endpoint`
//! holds each endpoint's breaker and bounds and makes one attempt through them; `send`
//! reaches the endpoint its way; `lease` names this instance and takes a row's lease;
//! `worker` carries one delivery to its end (attempts, the outcome written down, retries, the
//! dead letter).

mod dispatcher;
mod endpoint;
mod lease;
mod send;
mod worker;

pub use dispatcher::Dispatcher;
