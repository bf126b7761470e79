//! The manager API calls a run makes to set itself up: a sale, a coupon policy, their counters.

use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use http::{HeaderValue, Method, StatusCode};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::client::{Connection, Target};

/// A manager's session with the gateway (one connection, one token).
pub struct Manager {
    connection: Connection,
    authorization: HeaderValue,
}

/// The sale a run created.
#[derive(Debug, Clone, Deserialize)]
pub struct CreatedSale {
    /// Its id.
    pub sale_id: u64,
}

/// The coupon policy a run created.
#[derive(Debug, Clone, Deserialize)]
pub struct CreatedPolicy {
    /// Its id.
    pub policy_id: u64,
}

/// A coupon policy's live counters, as `GET /v1/admin/coupon-policies/{id}` shows them
/// (`remaining` and `issued` are null when Redis does not hold the policy).
#[derive(Debug, Clone, Copy, Deserialize)]
pub struct PolicyCounters {
    /// Coupons offered.
    pub total_quantity: u64,
    /// Coupons left in Redis.
    pub remaining: Option<i64>,
    /// Coupons claimed in Redis.
    pub issued: Option<i64>,
}

impl PolicyCounters {
    /// Coupons claimed in Redis (0 when Redis does not hold the policy).
    pub fn issued(&self) -> u64 {
        self.issued.unwrap_or(0).max(0) as u64
    }
}

impl Manager {
    /// A session with a manager's token (`Bearer …`).
    pub fn new(target: Target, token: &str, timeout: Duration) -> anyhow::Result<Self> {
        Ok(Self {
            connection: Connection::new(target, timeout),
            authorization: HeaderValue::from_str(&format!("Bearer {token}"))?,
        })
    }

    async fn call<T: DeserializeOwned>(
        &mut self,
        method: Method,
        path: &str,
        body: Option<Value>,
        expect: StatusCode,
    ) -> anyhow::Result<T> {
        let body = body.map(|b| Bytes::from(b.to_string()));
        let (status, bytes) = self
            .connection
            .call(method.clone(), path, &self.authorization, body)
            .await?;
        anyhow::ensure!(
            status == expect,
            "{method} {path} answered {status}: {}",
            String::from_utf8_lossy(&bytes)
        );
        serde_json::from_slice(&bytes).with_context(|| format!("decoding the answer of {path}"))
    }

    /// The manager's `Authorization` value (`Bearer …`), for requests sent elsewhere.
    pub fn authorization(&self) -> &HeaderValue {
        &self.authorization
    }

    /// Creates a sale of `stock` units, `per_user_limit` each, open from `opens_at` until
    /// `ends_at`, whose orders must be paid within `payment_window` (whole seconds; `None`:
    /// the gateway's default).
    pub async fn create_sale(
        &mut self,
        stock: u32,
        per_user_limit: u32,
        opens_at: DateTime<Utc>,
        ends_at: DateTime<Utc>,
        payment_window: Option<Duration>,
    ) -> anyhow::Result<CreatedSale> {
        let mut body = json!({
            "sku": "LOADTEST",
            "title": "flashgate-loadtest sale",
            "price": 1000,
            "stock": stock,
            "per_user_limit": per_user_limit,
            "starts_at": opens_at.to_rfc3339(),
            "ends_at": ends_at.to_rfc3339(),
        });
        if let Some(window) = payment_window {
            body["payment_window_seconds"] = json!(window.as_secs());
        }
        self.call(
            Method::POST,
            "/v1/admin/sales",
            Some(body),
            StatusCode::CREATED,
        )
        .await
        .context("creating the sale")
    }

    /// Creates a sale like [`Manager::create_sale`] starting at `starts_at`, behind a waiting
    /// room in draw mode that opens at `queue_opens_at` and admits `admit_per_second`.
    pub async fn create_queued_sale(
        &mut self,
        stock: u32,
        per_user_limit: u32,
        (queue_opens_at, starts_at, ends_at): (DateTime<Utc>, DateTime<Utc>, DateTime<Utc>),
        payment_window: Option<Duration>,
        admit_per_second: u32,
    ) -> anyhow::Result<CreatedSale> {
        let mut body = json!({
            "sku": "LOADTEST-QUEUED",
            "title": "flashgate-loadtest queued sale",
            "price": 1000,
            "stock": stock,
            "per_user_limit": per_user_limit,
            "starts_at": starts_at.to_rfc3339(),
            "ends_at": ends_at.to_rfc3339(),
            "queue": {
                "mode": "draw",
                "opens_at": queue_opens_at.to_rfc3339(),
                "admit_per_second": admit_per_second,
            },
        });
        if let Some(window) = payment_window {
            body["payment_window_seconds"] = json!(window.as_secs());
        }
        self.call(
            Method::POST,
            "/v1/admin/sales",
            Some(body),
            StatusCode::CREATED,
        )
        .await
        .context("creating the queued sale")
    }

    /// Creates a coupon policy of `total` coupons, `per_user_limit` each, claimable from
    /// `opens_at` for an hour.
    pub async fn create_policy(
        &mut self,
        total: u32,
        per_user_limit: u32,
        opens_at: DateTime<Utc>,
    ) -> anyhow::Result<CreatedPolicy> {
        let body = json!({
            "name": "flashgate-loadtest coupons",
            "discount": {"kind": "amount", "value": 100},
            "total_quantity": total,
            "per_user_limit": per_user_limit,
            "claim_starts_at": opens_at.to_rfc3339(),
            "claim_ends_at": (opens_at + chrono::Duration::hours(1)).to_rfc3339(),
            "valid_for_seconds": 86_400,
        });
        self.call(
            Method::POST,
            "/v1/admin/coupon-policies",
            Some(body),
            StatusCode::CREATED,
        )
        .await
        .context("creating the coupon policy")
    }

    /// The policy's live counters.
    pub async fn policy(&mut self, policy_id: u64) -> anyhow::Result<PolicyCounters> {
        self.call(
            Method::GET,
            &format!("/v1/admin/coupon-policies/{policy_id}"),
            None,
            StatusCode::OK,
        )
        .await
    }
}
