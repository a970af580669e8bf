//! The run's I/O offline: captures replayed (or the generator) through an input thread — across
//! a simulated bad wire (`[input] impair`) and traced (`[input] trace`) when asked — and the
//! `[output] pcap`, if any, written by an output thread.

use super::error::RunError;
use super::io::{through_threads, Io};
use crate::config::Config;
use crate::io::device::{Sink, Source};
use crate::io::generator::Generator;
use crate::io::impair::Impaired;
use crate::io::output::PcapSink;
use crate::io::replay::Captures;
use crate::io::trace::Traced;

/// Captures or the generator through an input thread; a pcap, if configured, written by an
/// output thread.
pub(super) fn build(config: &Config, shards: usize) -> Result<Io, RunError> {
    let mut source: Box<dyn Source> = match &config.input.generator {
        Some(g) => Box::new(Generator::new(g.clone())),
        None => Box::new(Captures::open(&config.input).map_err(RunError::Input)?),
    };
    // What the shards get: across the simulated wire first, then traced.
    if let Some(impair) = &config.input.impair {
        source = Box::new(Impaired::new(source, impair.impairment()));
    }
    if let Some(path) = &config.input.trace {
        let link = source.link();
        source = Box::new(Traced::new(source, path, link).map_err(RunError::Output)?);
    }
    let sink: Option<Box<dyn Sink>> = match &config.output.pcap {
        Some(path) => Some(Box::new(PcapSink::create(path, source.link()).map_err(RunError::Output)?)),
        None => None,
    };
    Ok(through_threads(source, sink, config.runtime.packet_buffers, shards, None))
}
