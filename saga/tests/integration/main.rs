//! Integration tests of the payment saga against the local stack (`scripts/stack.sh`): real
//! Redis, MySQL and Kafka, a gateway and the virtual provider in this process, the saga in
//! this process or as its binary.

mod crashes;
mod disruptive;
mod give_up;
mod helpers;
mod intake;
mod leases;
mod measure;
mod ops_metrics;
mod outage;
mod payments;
mod refunds;
mod throughput;
mod traces;
