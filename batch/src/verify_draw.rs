//! `verify-draw`: checks a waiting room's published draw from its public data alone — the
//! seed matches the commitment published before the draw, and the seed gives exactly the
//! published order of ticket ids (the procedure is `flashgate_events::draw`'s, the gateway's
//! own). The data comes from MySQL's `sale_queues` (what `GET /v1/sales/{id}/queue/draw`
//! serves), or from a file holding that route's JSON answer (`--file`), so anyone who saved it
//! can check it without access to the database.

use std::path::PathBuf;

use anyhow::Context;
use flashgate_config::Settings;
use flashgate_events::draw;
use serde::Deserialize;
use sqlx::Row;

use crate::exit::{EXIT_CLEAN, EXIT_DRIFT};

/// The command line of `verify-draw`.
#[derive(Debug, Clone, clap::Args)]
pub struct VerifyDrawArgs {
    /// The sale whose draw to check.
    #[arg(long, value_name = "ID")]
    pub sale: u64,
    /// Read the draw from this file (the JSON of `GET /v1/sales/{id}/queue/draw`, e.g. saved
    /// with curl) instead of MySQL.
    #[arg(long, value_name = "PATH")]
    pub file: Option<PathBuf>,
}

/// A published draw: what the route answers (other fields ignored).
#[derive(Debug, Deserialize)]
pub struct Published {
    /// hex of the 32-byte seed.
    pub seed: String,
    /// hex(SHA-256(seed)), as published before the draw.
    pub commitment: String,
    /// Ticket ids in position order.
    pub tickets: Vec<String>,
}

/// Checks the draw; prints the verdict. Exit 0: it checks out; 2: it does not.
pub async fn run(settings: &Settings, args: &VerifyDrawArgs) -> anyhow::Result<u8> {
    let published = match &args.file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            serde_json::from_str(&text)
                .with_context(|| format!("{} is not a published draw", path.display()))?
        }
        None => from_mysql(settings, args.sale).await?,
    };
    Ok(verdict(args.sale, &published))
}

/// Prints whether `published` checks out and returns the exit code.
pub fn verdict(sale_id: u64, published: &Published) -> u8 {
    match draw::verify(&published.seed, &published.commitment, &published.tickets) {
        Ok(()) => {
            println!(
                "sale {sale_id}: the draw checks out: SHA-256(seed) = commitment {}, and the seed \
                 gives the published order of all {} tickets",
                published.commitment,
                published.tickets.len()
            );
            EXIT_CLEAN
        }
        Err(mismatch) => {
            eprintln!("sale {sale_id}: the draw does NOT check out: {mismatch}");
            EXIT_DRIFT
        }
    }
}

async fn from_mysql(settings: &Settings, sale_id: u64) -> anyhow::Result<Published> {
    let db = settings
        .mysql
        .connect_sized(1)
        .await
        .context("connecting to MySQL")?;
    let row = sqlx::query(
        "SELECT seed, commitment, drawn_tickets FROM sale_queues \
         WHERE sale_id = ? AND drawn_at IS NOT NULL",
    )
    .bind(sale_id)
    .fetch_optional(&db)
    .await
    .context("reading the draw")?
    .with_context(|| format!("sale {sale_id} has no draw (no waiting room, or not drawn yet)"))?;
    let tickets: String = row.try_get("drawn_tickets")?;
    Ok(Published {
        seed: row.try_get("seed")?,
        commitment: row.try_get("commitment")?,
        tickets: tickets
            .split('\n')
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
            .collect(),
    })
}
