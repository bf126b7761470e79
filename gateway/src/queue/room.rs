//! A waiting room in Redis: loading it, joining, polling a ticket, its live counts, a
//! manager's changes. Each action is one script (`lua/queue_*.lua`) on the sale's hash tag.

use anyhow::Context;
use fred::prelude::{HashesInterface, KeysInterface, Pool, SetsInterface, Value};

use crate::app::App;
use crate::failure::Failure;
use crate::queue::keys::{QueueKeys, live_queues};
use crate::queue::spec::{QueueCounts, QueuePatch, StoredQueue};
use crate::sales::sale::Sale;
use crate::scripts::{Scripts, reply_int, reply_text, unexpected_reply};

/// A ticket as Redis holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ticket {
    /// The ticket's random id.
    pub ticket_id: String,
    /// Its owner.
    pub user_id: String,
    /// `waiting`, `admitted`, `expired` or `dropped`.
    pub status: String,
    /// Its position, once the draw has run (or, joined after it, at once).
    pub position: Option<i64>,
    /// When its pass expires (Unix ms), once admitted.
    pub pass_expiry_ms: Option<i64>,
}

impl Ticket {
    /// A record of `tickets`: `user\nstatus\nposition\npass_expiry_ms`.
    fn parse(ticket_id: &str, record: &str) -> Option<Self> {
        let mut fields = record.split('\n');
        let (user, status, position, expiry) = (
            fields.next()?,
            fields.next()?,
            fields.next()?,
            fields.next()?,
        );
        Some(Self {
            ticket_id: ticket_id.to_owned(),
            user_id: user.to_owned(),
            status: status.to_owned(),
            position: position.parse().ok(),
            pass_expiry_ms: expiry.parse().ok(),
        })
    }
}

/// What joining did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Joined {
    /// A new ticket.
    New {
        /// Its id.
        ticket_id: String,
        /// Its position when the draw has already run.
        position: Option<i64>,
    },
    /// The user's ticket from before.
    Existing(Ticket),
    /// The sale has no waiting room in Redis.
    NotFound,
    /// Joining has not opened yet.
    NotOpen,
    /// The sale has ended.
    Closed,
}

/// A ticket polled by its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Polled {
    /// The ticket.
    pub ticket: Ticket,
    /// Waiting tickets ahead of it in the line (`None` before the draw or when not waiting).
    pub ahead: Option<i64>,
    /// Admissions per second now.
    pub rate: i64,
    /// Admission paused by a manager.
    pub paused: bool,
}

/// Loads the room unless Redis holds it, and lists it for the admitter.
pub async fn open(
    redis: &Pool,
    scripts: &Scripts,
    prefix: &str,
    sale: &Sale,
    queue: &StoredQueue,
    drawn_tickets: usize,
) -> anyhow::Result<()> {
    let keys = QueueKeys::new(prefix, sale.sale_id);
    let args: Vec<Value> = vec![
        queue.opens_at.timestamp_millis().into(),
        sale.starts_at.timestamp_millis().into(),
        sale.ends_at.timestamp_millis().into(),
        i64::from(queue.admit_per_second).into(),
        i64::from(queue.max_active.unwrap_or(0)).into(),
        if queue.paused { "1" } else { "0" }.into(),
        queue.commitment.as_str().into(),
        if queue.drawn_at.is_some() { "1" } else { "0" }.into(),
        i64::try_from(drawn_tickets).unwrap_or(i64::MAX).into(),
    ];
    let _: i64 = scripts
        .queue_open
        .run(redis, vec![keys.q], args)
        .await
        .context("loading the waiting room into Redis")?;
    let _: i64 = redis
        .sadd(live_queues(prefix), sale.sale_id)
        .await
        .context("listing the waiting room for the admitter")?;
    Ok(())
}

/// `user` joins the sale's room (once: a second join finds the first ticket).
pub async fn join(app: &App, sale_id: u64, user: &str) -> Result<Joined, Failure> {
    let keys = QueueKeys::new(app.prefix(), sale_id);
    let ticket_id = uuid::Uuid::new_v4().simple().to_string();
    let reply: Vec<Value> = app
        .scripts
        .queue_join
        .run(
            &app.redis,
            vec![
                keys.q,
                keys.tickets,
                keys.users,
                keys.seen,
                keys.pre,
                keys.late,
                keys.line,
            ],
            vec![user, ticket_id.as_str()],
        )
        .await
        .map_err(Failure::unreachable("queue join"))?;
    Ok(match reply_text(&reply, 0).as_str() {
        "joined" => Joined::New {
            ticket_id: reply_text(&reply, 1),
            position: reply_text(&reply, 2).parse().ok(),
        },
        "existing" => {
            let id = reply_text(&reply, 1);
            let ticket = Ticket::parse(&id, &reply_text(&reply, 2)).ok_or_else(|| {
                Failure::Internal(anyhow::anyhow!("unreadable queue ticket {id}"))
            })?;
            Joined::Existing(ticket)
        }
        "not_found" => Joined::NotFound,
        "not_open" => Joined::NotOpen,
        "closed" => Joined::Closed,
        other => {
            return Err(Failure::unreachable("queue join")(unexpected_reply(
                "queue_join",
                other,
            )));
        }
    })
}

/// The ticket as its owner `user` polls it (which keeps it from being dropped); `None` when
/// there is no such ticket of this user.
pub async fn poll(
    app: &App,
    sale_id: u64,
    ticket_id: &str,
    user: &str,
) -> Result<Option<Polled>, Failure> {
    let keys = QueueKeys::new(app.prefix(), sale_id);
    let reply: Vec<Value> = app
        .scripts
        .queue_ticket
        .run(
            &app.redis,
            vec![keys.q, keys.tickets, keys.seen, keys.line],
            vec![ticket_id, user],
        )
        .await
        .map_err(Failure::unreachable("queue poll"))?;
    if reply_text(&reply, 0) != "ticket" {
        return Ok(None);
    }
    let ahead = reply_int(&reply, 4);
    Ok(Some(Polled {
        ticket: Ticket {
            ticket_id: ticket_id.to_owned(),
            user_id: user.to_owned(),
            status: reply_text(&reply, 1),
            position: reply_text(&reply, 2).parse().ok(),
            pass_expiry_ms: reply_text(&reply, 3).parse().ok(),
        },
        ahead: (ahead >= 0).then_some(ahead),
        rate: reply_text(&reply, 5).parse().unwrap_or(0),
        paused: reply_text(&reply, 6) == "1",
    }))
}

/// The room's live counts; `None` when Redis does not hold it.
pub async fn counts(
    redis: &Pool,
    scripts: &Scripts,
    prefix: &str,
    sale_id: u64,
) -> anyhow::Result<Option<QueueCounts>> {
    let keys = QueueKeys::new(prefix, sale_id);
    let reply: Vec<Value> = scripts
        .queue_status
        .run(
            redis,
            vec![keys.q, keys.pre, keys.late, keys.line, keys.active],
            Vec::<Value>::new(),
        )
        .await
        .context("reading the waiting room's counts")?;
    if reply_text(&reply, 0) != "status" {
        return Ok(None);
    }
    let number = |i| {
        reply
            .get(i)
            .and_then(|v: &Value| v.as_i64().or_else(|| v.as_string()?.parse().ok()))
            .unwrap_or(0)
    };
    Ok(Some(QueueCounts {
        joined: number(1),
        admitted: number(2),
        dropped: number(3),
        expired: number(4),
        waiting: number(5),
        active: number(6),
        admit_per_second: number(7),
        paused: reply_text(&reply, 8) == "1",
        drawn: reply_text(&reply, 9) == "1",
    }))
}

/// A manager's change, in Redis when it holds the room (a room Redis lost is loaded again
/// from MySQL, with the change, by the next restore).
pub async fn apply(
    redis: &Pool,
    prefix: &str,
    sale_id: u64,
    patch: &QueuePatch,
) -> anyhow::Result<()> {
    let keys = QueueKeys::new(prefix, sale_id);
    let present: bool = redis
        .exists(&keys.q)
        .await
        .context("checking the waiting room")?;
    if !present {
        return Ok(());
    }
    let mut fields: Vec<(&str, Value)> = Vec::new();
    if let Some(rate) = patch.admit_per_second {
        fields.push(("rate", i64::from(rate).into()));
    }
    if let Some(paused) = patch.paused {
        fields.push(("paused", if paused { "1" } else { "0" }.into()));
    }
    let _: i64 = redis
        .hset(&keys.q, fields)
        .await
        .context("changing the waiting room")?;
    Ok(())
}
