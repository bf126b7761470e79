//! Rate limits: which class a route is in, who the client is (its address behind trusted
//! proxies), the GCRA verdict of `lua/rate_limit.lua`, and the `RateLimit-Policy` /
//! `RateLimit` headers of draft-ietf-httpapi-ratelimit-headers.

pub mod address;
pub mod class;
pub mod headers;
pub mod limiter;

pub use address::Client;
pub use class::class_of;
pub use headers::Refusal;
pub use limiter::{Armed, Limiter, Quota};
