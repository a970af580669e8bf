//! The `mbox` command: run a config, print its service graph, or generate traffic.

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use mbox_core::config::Config;
use mbox_core::files::{FileUse, RunFiles};
use mbox_core::ids::{self, IdsRun, SuricataSettings};
use mbox_core::io::capture::PcapWriter;
use mbox_core::io::generator::{Generator, GeneratorConfig};
use mbox_core::io::merge::{merge, MergeOptions};
use mbox_core::run::{self, RunOptions};
use mbox_core::summary;
use std::path::PathBuf;
use std::process::ExitCode;

/// `--version`: mbox's version, the commit it was built from (build.rs), the plugin ABI it
/// loads, and how it was built.
static LONG_VERSION: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let dpdk = if cfg!(feature = "dpdk") { "built in" } else { "not built (cargo build --features dpdk)" };
    format!(
        "{} (commit {}; plugins: mbox-abi {}; DPDK: {dpdk})",
        env!("CARGO_PKG_VERSION"),
        env!("MBOX_COMMIT"),
        mbox_abi::ABI_CRATE_VERSION
    )
});

#[derive(Parser)]
#[command(name = "mbox", version, long_version = LONG_VERSION.as_str(), about = "Microboxes in Rust: NFs on events from one shared, customizable stack")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run CONFIG to the end of its input and print a summary.
    Run {
        config: PathBuf,
        /// Also write the summary as JSON to this file.
        #[arg(long)]
        report: Option<PathBuf>,
        /// No progress bar.
        #[arg(long, short)]
        quiet: bool,
        /// Read this capture instead of the config's input.
        #[arg(long)]
        pcap: Option<PathBuf>,
    },
    /// Suricata's command line on mbox: run the IDS chain (sig-match, eve-log) on a capture
    /// and write eve.json and fast.log to the log directory, as `suricata -r` does.
    Ids {
        /// The capture to read (pcap or pcapng).
        #[arg(short = 'r', value_name = "CAPTURE")]
        capture: PathBuf,
        /// A rule file (repeat for more; a sid is taken once). Default: the YAML's rule-files.
        #[arg(short = 'S', value_name = "RULES")]
        rules: Vec<PathBuf>,
        /// Directory for eve.json and fast.log (created if needed).
        #[arg(short = 'l', value_name = "DIR", default_value = ".")]
        log_dir: PathBuf,
        /// A suricata.yaml: its address and port groups, classification file, rule files and
        /// stream depth and midstream setting are used.
        #[arg(short = 'c', value_name = "YAML")]
        yaml: Option<PathBuf>,
        /// Override a setting, as Suricata's --set (vars.address-groups.HOME_NET=any, ...).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        sets: Vec<String>,
        /// No fast.log.
        #[arg(long)]
        no_fast: bool,
        /// Print the config this run is (for `mbox run`) and stop.
        #[arg(long)]
        print_config: bool,
        /// Also write the run's summary as JSON to this file.
        #[arg(long)]
        report: Option<PathBuf>,
        /// No progress bar.
        #[arg(long, short)]
        quiet: bool,
    },
    /// Rule files: `mbox rules check FILE...` loads them as sig-match would.
    Rules {
        #[command(subcommand)]
        command: RulesCommand,
    },
    /// Print the service graph CONFIG compiles to, in Graphviz DOT.
    Graph { config: PathBuf },
    /// Reassemble every TCP connection of a capture: one file per direction, and an index
    /// (streams.tsv) with addresses, sizes, SHA-256 and gaps.
    Streams {
        capture: PathBuf,
        /// Directory for the files (created if needed).
        #[arg(long, short)]
        out: PathBuf,
        /// Flows open at once.
        #[arg(long, default_value_t = 65_536)]
        max_flows: usize,
        /// The client of a connection picked up mid-stream: "first" (the sender of its first
        /// packet) or "detect" (as `[flow] midstream_client`, docs/config.md).
        #[arg(long, default_value = "first", value_parser = ["first", "detect"])]
        midstream_client: String,
    },
    /// Merge captures into one Ethernet pcap, repeated with moved addresses and times: the same
    /// input for mbox and for other tools (Suricata, ndpiReader) to compare on.
    Merge {
        /// The captures, read in this order.
        #[arg(required = true)]
        captures: Vec<PathBuf>,
        /// The pcap file to write.
        #[arg(long, short)]
        out: PathBuf,
        /// Read the captures this many times.
        #[arg(long, default_value_t = 1)]
        repeat: u32,
        /// Pause before each capture, after the previous one's last packet ("1h", "30s").
        #[arg(long, default_value = "1h")]
        retime: String,
        /// Keep every pass's addresses (repeated passes then continue the same flows).
        #[arg(long)]
        no_remap: bool,
    },
    /// Write synthetic traffic to a pcap file.
    Gen {
        /// The pcap file to write.
        #[arg(long, short)]
        out: PathBuf,
        #[command(flatten)]
        traffic: GenArgs,
    },
}

#[derive(Subcommand)]
enum RulesCommand {
    /// Load rule files as sig-match does (Suricata's -T) and list every rule refused with
    /// its file, line, sid and reason, then a tally by keyword. Exits 2 when any is refused.
    Check {
        #[arg(required = true, value_name = "RULES")]
        files: Vec<PathBuf>,
        /// A suricata.yaml for the address and port groups and the classification file.
        #[arg(short = 'c', value_name = "YAML")]
        yaml: Option<PathBuf>,
        /// Override a setting, as in `mbox ids`.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        sets: Vec<String>,
    },
}

/// The generator's settings (see `[input] generator` in the config for the same keys).
#[derive(Args)]
struct GenArgs {
    #[arg(long, default_value_t = GeneratorConfig::default().flows)]
    flows: u64,
    #[arg(long, default_value_t = GeneratorConfig::default().udp_flows)]
    udp_flows: u64,
    #[arg(long, default_value_t = GeneratorConfig::default().concurrency)]
    concurrency: usize,
    #[arg(long, default_value_t = GeneratorConfig::default().request_bytes)]
    request_bytes: u32,
    #[arg(long, default_value_t = GeneratorConfig::default().response_bytes)]
    response_bytes: u32,
    #[arg(long, default_value_t = GeneratorConfig::default().mss)]
    mss: u16,
    #[arg(long, default_value_t = 0.0)]
    loss: f64,
    #[arg(long, default_value_t = 0.0)]
    tap_loss: f64,
    #[arg(long, default_value_t = 0.0)]
    reorder: f64,
    #[arg(long, default_value_t = 0.0)]
    duplicate: f64,
    #[arg(long, default_value_t = GeneratorConfig::default().rst_fraction)]
    rst_fraction: f64,
    #[arg(long, default_value_t = GeneratorConfig::default().seed)]
    seed: u64,
}

/// `mbox run`'s exit status when an output could not be written in full.
const LOST_OUTPUT: u8 = 4;
/// `mbox run`'s exit status when an NF was disabled during the run (it failed: its events
/// were dropped from then on), even if a reload revived it.
const NF_DISABLED: u8 = 5;

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("mbox: {}", one_line(&e));
            ExitCode::from(1)
        }
    }
}

/// An error and its causes on one line, each cause once: the library errors already name
/// their source in their message, and `{:#}` would repeat it.
fn one_line(e: &anyhow::Error) -> String {
    let mut line = e.to_string();
    for cause in e.chain().skip(1) {
        let text = cause.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
    }
    line
}

/// Runs a config to its end: the summary printed, the report written, and the exit status
/// that says what was lost. `after` runs once the NFs finished (more output for the run).
fn run_config(
    cfg: Config,
    config_path: &std::path::Path,
    report: Option<PathBuf>,
    quiet: bool,
    after: impl FnOnce(&mbox_core::report::RunReport, &mut Vec<String>),
) -> Result<ExitCode> {
    // Ctrl-C (or SIGTERM) ends the run as the end of its input would: NFs finish and
    // the summary is printed. A live input runs until then.
    // SIGHUP: under a service manager, "logs were rotated" (NFs reopen their outputs);
    // from a terminal, the terminal went away (the run stops).
    mbox_core::sys::stop::install(!std::io::IsTerminal::is_terminal(&std::io::stderr()));
    // A signal before the run begins ends mbox at once (plugin code creating an NF
    // cannot be interrupted), removing the outputs start-up had begun.
    let startup = mbox_core::sys::stop::Startup::watch();
    let mut prepared = run::prepare(cfg, config_path)?;
    if let Some(path) = &report {
        prepared.files.writes.push(FileUse { role: "--report".into(), path: path.clone() });
        prepared.files.check().with_context(|| config_path.display().to_string())?;
    }
    startup.outputs(prepared.files.writes.iter().map(|w| w.path.clone()));
    let result = run::run(prepared, RunOptions { progress: !quiet })?;
    print!("{}", summary::text(&result));
    let mut lost = result.lost_output();
    after(&result, &mut lost);
    if let Some(path) = report {
        let json = serde_json::to_string_pretty(&summary::json(&result))?;
        if let Err(e) = std::fs::write(&path, json) {
            lost.push(format!("--report {}: {e}", path.display()));
        }
    }
    for what in &lost {
        eprintln!("mbox: output lost: {what}");
    }
    // Output lost: the files do not hold all the results. The input ended early: results
    // cover only what was read. Either way the status says so.
    Ok(if !lost.is_empty() {
        ExitCode::from(LOST_OUTPUT)
    } else if result.nfs.iter().any(|nf| nf.failures > 0) {
        ExitCode::from(NF_DISABLED)
    } else if result.input.error.is_some() {
        ExitCode::from(3)
    } else {
        ExitCode::SUCCESS
    })
}

/// The suricata.yaml settings with the `--set` overrides.
fn suricata_settings(yaml: Option<&std::path::Path>, sets: &[String]) -> Result<SuricataSettings> {
    let mut settings = match yaml {
        Some(path) => SuricataSettings::load(path)?,
        None => SuricataSettings::default(),
    };
    for s in sets {
        settings.set(s)?;
    }
    Ok(settings)
}

/// `mbox rules check`: loads the files into one set and reports what was refused.
fn rules_check(files: &[PathBuf], settings: &SuricataSettings) -> Result<ExitCode> {
    let mut vars = mbox_sig::Vars::default();
    vars.addresses.extend(settings.address_groups.clone());
    vars.ports.extend(settings.port_groups.clone());
    let classes = mbox_sig::Classifications::from_file_or_stock(settings.classification_file.as_deref()).map_err(anyhow::Error::msg)?;
    let mut set = mbox_sig::RuleSet::new(vars, classes);
    for f in files {
        set.add_file(f).with_context(|| format!("cannot read rules {}", f.display()))?;
    }
    let loaded = set.finish();
    for e in &loaded.refused {
        println!("{e}");
    }
    let total = loaded.rules.len() + loaded.refused.len();
    println!("{} of {total} rules load, {} refused", loaded.rules.len(), loaded.refused.len());
    if !loaded.refused.is_empty() {
        let tally: Vec<String> = loaded.refused_by_keyword().iter().map(|(k, n)| format!("{k} {n}")).collect();
        println!("refused by keyword: {}", tally.join(", "));
    }
    Ok(if loaded.refused.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(2) })
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Run { config, report, quiet, pcap } => {
            let mut cfg = Config::load(&config)?;
            if let Some(path) = pcap {
                cfg.input.pcap = vec![path];
                cfg.input.generator = None;
            }
            run_config(cfg, &config, report, quiet, |_, _| {})
        }
        Command::Ids { capture, rules, log_dir, yaml, sets, no_fast, print_config, report, quiet } => {
            let settings = suricata_settings(yaml.as_deref(), &sets)?;
            let ids = IdsRun { capture, rules, log_dir, settings, fast: !no_fast };
            if print_config {
                print!("{}", ids.config_toml()?);
                return Ok(ExitCode::SUCCESS);
            }
            let cfg = ids.config()?;
            std::fs::create_dir_all(&ids.log_dir).with_context(|| format!("log directory {}", ids.log_dir.display()))?;
            let started = std::time::Instant::now();
            run_config(cfg, std::path::Path::new("(mbox ids)"), report, quiet, |result, lost| {
                // The run's counters as Suricata's stats record, after the NFs' records.
                let eve = ids.eve_path();
                let line = ids::stats_record(result, started.elapsed().as_secs()).to_string() + "\n";
                let appended = std::fs::OpenOptions::new()
                    .append(true)
                    .open(&eve)
                    .and_then(|mut f| std::io::Write::write_all(&mut f, line.as_bytes()));
                if let Err(e) = appended {
                    lost.push(format!("{} (stats record): {e}", eve.display()));
                }
            })
        }
        Command::Rules { command: RulesCommand::Check { files, yaml, sets } } => {
            let settings = suricata_settings(yaml.as_deref(), &sets)?;
            rules_check(&files, &settings)
        }
        Command::Graph { config } => {
            let cfg = Config::load(&config)?;
            let prepared = run::prepare(cfg, &config)?;
            print!("{}", prepared.graph.to_dot(&prepared.registry));
            Ok(ExitCode::SUCCESS)
        }
        Command::Streams { capture, out, max_flows, midstream_client } => {
            let midstream_client = match midstream_client.as_str() {
                "detect" => mbox_stack::l23::MidstreamClient::Detect,
                _ => mbox_stack::l23::MidstreamClient::First,
            };
            let report = mbox_core::streams::write_streams(&capture, &out, max_flows.max(1), midstream_client)?;
            eprintln!("{} packets, {} TCP connections: {}", report.packets, report.connections, out.join("streams.tsv").display());
            Ok(ExitCode::SUCCESS)
        }
        Command::Merge { captures, out, repeat, retime, no_remap } => {
            let retime = mbox_core::config::parse_duration(&retime).map_err(anyhow::Error::msg).context("--retime")?;
            let reads = captures.iter().map(|c| FileUse { role: "a capture to merge".into(), path: c.clone() }).collect();
            RunFiles { reads, writes: vec![FileUse { role: "--out".into(), path: out.clone() }] }.check()?;
            let opts = MergeOptions { repeat: repeat.max(1), retime, remap: !no_remap };
            let report = merge(&captures, &opts, &out).with_context(|| format!("merging into {}", out.display()))?;
            eprintln!(
                "wrote {} packets ({} bytes) to {}; skipped {} non-IP frames of non-Ethernet captures, {} malformed",
                report.packets,
                report.bytes,
                out.display(),
                report.skipped_non_ip,
                report.malformed
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Gen { out, traffic: t } => {
            let cfg = GeneratorConfig {
                flows: t.flows,
                udp_flows: t.udp_flows,
                concurrency: t.concurrency,
                request_bytes: t.request_bytes,
                response_bytes: t.response_bytes,
                mss: t.mss,
                loss: t.loss,
                tap_loss: t.tap_loss,
                reorder: t.reorder,
                duplicate: t.duplicate,
                rst_fraction: t.rst_fraction,
                seed: t.seed,
                ..GeneratorConfig::default()
            };
            cfg.validate().map_err(anyhow::Error::msg).context("generator settings")?;
            let mut generator = Generator::new(cfg);
            let mut writer = PcapWriter::create(&out, generator.link())?;
            let mut buf = Vec::new();
            let mut packets = 0u64;
            while let Some(ts) = generator.next_packet(&mut buf) {
                writer.write(ts, buf.len() as u32, &buf)?;
                packets += 1;
            }
            writer.finish()?;
            eprintln!("wrote {packets} packets to {}", out.display());
            Ok(ExitCode::SUCCESS)
        }
    }
}
