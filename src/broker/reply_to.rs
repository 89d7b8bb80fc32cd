//! Which `reply_to` addresses a result may be sent to.
//!
//! `reply_to` comes from whoever published the job, and the worker publishes with its
//! own rights: without a rule, a job could make the worker write into any queue it can
//! write to (another pool's job queue, say). Only two kinds of address are private to
//! the publisher that asked, and those are the only ones accepted:
//! - RabbitMQ's direct reply-to (`amq.rabbitmq.reply-to...`), which routes to one
//!   consumer on one channel;
//! - a server-named queue (`amq.gen-...`): clients cannot declare `amq.`-prefixed names,
//!   so such a queue was made by a client asking the broker for a fresh name, the way
//!   an exclusive reply queue is (`submit --wait` does exactly that).
//!
//! A server-named queue that does not exist (any more) is caught at publish time: the
//! reply is published `mandatory`, and a return means "reply not delivered". Direct
//! reply-to is published without `mandatory`: RabbitMQ 3.10 returns such a message as
//! unroutable although it delivered it (seen here), and drops a reply whose consumer is
//! gone, which is the same outcome a return would report.

/// The prefix of RabbitMQ's direct reply-to pseudo-queue (and of the names it hands
/// out: `amq.rabbitmq.reply-to.<token>`).
pub const DIRECT_REPLY_TO: &str = "amq.rabbitmq.reply-to";

/// The prefix RabbitMQ gives server-named queues.
pub const SERVER_NAMED: &str = "amq.gen-";

/// AMQP's limit on a queue name (a short string).
const MAX_NAME: usize = 255;

/// Why a `reply_to` was not used. The result still goes to `guestkit.results`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplyRefused {
    #[error("reply_to names a guestkit queue, which only the broker topology may feed")]
    GuestkitQueue,
    #[error(
        "reply_to must be direct reply-to ({DIRECT_REPLY_TO}) or a server-named queue \
         ({SERVER_NAMED}...)"
    )]
    NotPrivate,
    #[error("reply_to is not a valid queue name")]
    Malformed,
}

impl ReplyRefused {
    /// A short label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            ReplyRefused::GuestkitQueue => "guestkit_queue",
            ReplyRefused::NotPrivate => "not_private",
            ReplyRefused::Malformed => "malformed",
        }
    }
}

/// Where a reply may go: the routing key on the default exchange, and whether a return
/// can tell that it was not delivered (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplyTarget<'a> {
    pub queue: &'a str,
    pub mandatory: bool,
}

/// Checks `reply_to`; `Ok` says where and how to publish the reply.
pub fn check(reply_to: &str) -> Result<ReplyTarget<'_>, ReplyRefused> {
    if reply_to.is_empty()
        || reply_to.len() > MAX_NAME
        || reply_to
            .chars()
            .any(|c| c.is_control() || c.is_whitespace())
    {
        return Err(ReplyRefused::Malformed);
    }
    if reply_to.starts_with("guestkit.") {
        return Err(ReplyRefused::GuestkitQueue);
    }
    let direct =
        reply_to == DIRECT_REPLY_TO || reply_to.starts_with(&format!("{DIRECT_REPLY_TO}."));
    let server_named = reply_to.starts_with(SERVER_NAMED) && reply_to.len() > SERVER_NAMED.len();
    if direct || server_named {
        Ok(ReplyTarget {
            queue: reply_to,
            mandatory: server_named,
        })
    } else {
        Err(ReplyRefused::NotPrivate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_reply_addresses_are_accepted() {
        for (queue, mandatory) in [
            ("amq.rabbitmq.reply-to", false),
            (
                "amq.rabbitmq.reply-to.g1h2AA5yZXBseUAyNzk4OTk0NQAAF2oAAAAAZgZ6qw==",
                false,
            ),
            ("amq.gen-JzTY20BRgKO-HjmUJj0wLg", true),
        ] {
            assert_eq!(check(queue), Ok(ReplyTarget { queue, mandatory }));
        }
    }

    #[test]
    fn other_queues_are_refused_with_the_reason() {
        assert_eq!(check("guestkit.jobs.rtb"), Err(ReplyRefused::GuestkitQueue));
        assert_eq!(check("guestkit.results"), Err(ReplyRefused::GuestkitQueue));
        assert_eq!(check("orders"), Err(ReplyRefused::NotPrivate));
        assert_eq!(check("amq.gen-"), Err(ReplyRefused::NotPrivate));
        assert_eq!(
            check("amq.rabbitmq.reply-tox"),
            Err(ReplyRefused::NotPrivate)
        );
        assert_eq!(check("amq.direct"), Err(ReplyRefused::NotPrivate));
        assert_eq!(check(""), Err(ReplyRefused::Malformed));
        assert_eq!(check("amq.gen-a\nb"), Err(ReplyRefused::Malformed));
        assert_eq!(check(&"a".repeat(256)), Err(ReplyRefused::Malformed));
    }
}
