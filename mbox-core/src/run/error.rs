//! Why a run could not start or finish: one error type for every step, each variant naming the
//! config file and the key to fix where there is one.

use crate::config::ConfigError;
use crate::control::server::ControlError;
use crate::controller::GraphError;
use crate::events::registry::RegistryError;
use crate::files::FileClash;
use crate::io::capture::CaptureError;
use crate::plugin::PluginError;
use std::path::PathBuf;
use thiserror::Error;

/// Why a run could not start or finish.
#[derive(Debug, Error)]
pub enum RunError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Plugin(#[from] PluginError),
    #[error("{config}: {key}: {source}")]
    Types { config: PathBuf, key: String, source: RegistryError },
    #[error("{config}: {source}")]
    Graph { config: PathBuf, source: GraphError },
    #[error("input: {0}")]
    Input(CaptureError),
    #[error("output: {0}")]
    Output(CaptureError),
    #[error("a {0} thread failed: {1}")]
    Thread(String, String),
    #[error("{config}: [runtime] cores: {problem}")]
    Cores { config: PathBuf, problem: String },
    #[error("{config}: {clash}")]
    Files { config: PathBuf, clash: Box<FileClash> },
    #[error("{config}: [runtime] memory_limit: {problem}")]
    Memory { config: PathBuf, problem: String },
    #[error(transparent)]
    Control(#[from] ControlError),
    #[cfg(feature = "dpdk")]
    #[error(transparent)]
    Dpdk(#[from] crate::io::dpdk::DpdkError),
}
