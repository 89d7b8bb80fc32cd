//! guestkit-worker: inspects VM disk images, in userspace, for jobs taken from RabbitMQ.
//!
//! How a job travels: [`worker`] consumes `guestkit.jobs.<pool>`, [`executor`] decodes,
//! validates and runs it through the [`ops`] registry under a timeout, [`render`]
//! turns the result into bytes, [`broker::publisher`] publishes it with confirms, and
//! only then is the delivery acked. [`inspect`] is the disk-image pipeline.

#![forbid(unsafe_code)]

pub mod broker;
pub mod config;
pub mod executor;
pub mod http;
pub mod inspect;
pub mod isolation;
pub mod logging;
pub mod metrics;
pub mod ops;
pub mod profile;
pub mod progress;
pub mod render;
pub mod shutdown;
pub mod submit;
pub mod worker;
