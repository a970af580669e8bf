//! The run's I/O offline: captures replayed (or the generator) through an input thread, and
//! the `[output] pcap`, if any, written by an output thread.

use super::error::RunError;
use super::io::{through_threads, Io};
use crate::config::Config;
use crate::io::device::{Sink, Source};
use crate::io::generator::Generator;
use crate::io::output::PcapSink;
use crate::io::replay::Captures;

/// Captures or the generator through an input thread; a pcap, if configured, written by an
/// output thread.
pub(super) fn build(config: &Config, shards: usize) -> Result<Io, RunError> {
    let source: Box<dyn Source> = match &config.input.generator {
        Some(g) => Box::new(Generator::new(g.clone())),
        None => Box::new(Captures::open(&config.input).map_err(RunError::Input)?),
    };
    let sink: Option<Box<dyn Sink>> = match &config.output.pcap {
        Some(path) => Some(Box::new(PcapSink::create(path, source.link()).map_err(RunError::Output)?)),
        None => None,
    };
    Ok(through_threads(source, sink, config.runtime.packet_buffers, shards, None))
}
