//! The route handlers: each parses its request, asks the book, and maps the outcome.

pub mod charges;
pub mod health;
pub mod refund;
