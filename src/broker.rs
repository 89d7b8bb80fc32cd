//! Everything that talks AMQP: topology, connections, the confirmed publisher.

pub mod connection;
pub mod publisher;
pub mod reply_to;
pub mod settler;
pub mod tls;
pub mod topology;
