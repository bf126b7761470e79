//! The notifier against the local stack: real MySQL, Kafka, an SMTP server on loopback and
//! HTTP receivers in the test.

mod deliveries;
mod failures;
mod helpers;
mod instances;
mod sold_out;
mod traces;
