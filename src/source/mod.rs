//! Sources: where raw events come from. A source reads events, prepares
//! them with their group's rules ([`crate::pipeline::prepare`]) and hands
//! them to the [`crate::pipeline::Pipeline`] in batches, each with the
//! position the source will have reached once the batch is delivered (a
//! group's covered range; a Firehose request); `submit` returns once the
//! batch is committed. Adding a source is a module here and the command
//! that runs it (see [`crate::app`]).
//!
//! - [`pull`]: polls CloudWatch Logs, group by group (`cwtap run`,
//!   `cwtap backfill`).
//! - [`firehose`]: receives subscription filters' events through Amazon
//!   Data Firehose (`cwtap serve`).

pub mod firehose;
pub mod pull;
