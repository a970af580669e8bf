//! `mboxctl`: asks a running mbox (through its `[control] socket`) for its status, counters,
//! service graph and subscriptions, reloads its NFs and hands them commands.

use anyhow::{anyhow, bail, Context, Result};
use clap::{Parser, Subcommand};
use mbox_core::summary;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command as Process, ExitCode, Stdio};
use std::time::Duration;

#[derive(Parser)]
#[command(name = "mboxctl", version, about = "Talk to a running mbox through its control socket")]
struct Cli {
    /// The running mbox's `[control] socket`.
    #[arg(long, short, env = "MBOX_SOCKET", global = true)]
    socket: Option<PathBuf>,
    /// Print the answer as JSON (for scripts).
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Uptime, input, shards, and each NF's plugin and state.
    Status,
    /// Counters per shard and per NF: packets, events in and out by type, drops by cause,
    /// ring occupancy, NF service time.
    Stats,
    /// The compiled service graph, as Graphviz DOT.
    Graph {
        /// Write it as SVG to this file instead (needs graphviz's `dot`).
        #[arg(long)]
        svg: Option<PathBuf>,
    },
    /// What an NF subscribes to and publishes, and where it runs on each event type's route.
    Subscriptions { nf: String },
    /// Create a plugin crate that builds as is (run it in the mbox repository: it goes to
    /// plugins/NAME, a workspace member).
    New {
        name: String,
        /// Where to create it instead of plugins/NAME. In a checkout's plugins/ it is a member
        /// of the workspace; anywhere else a crate of its own, against the mbox of `--mbox`.
        #[arg(long)]
        dir: Option<PathBuf>,
        /// The mbox checkout a crate outside the workspace builds against (default: the one
        /// this mboxctl was built from).
        #[arg(long)]
        mbox: Option<PathBuf>,
    },
    /// Swap in a rebuilt plugin for NF while traffic runs: the old instance handles what is
    /// queued for it and hands over its state (or finishes); the shards queue meanwhile.
    Reload {
        nf: String,
        /// The library to load (default: the one the NF runs now, rebuilt in place).
        #[arg(long)]
        path: Option<PathBuf>,
    },
    /// Hands NF a command of its own, run on its thread between batches (the l7-lb's
    /// `drain BACKEND`, `undrain BACKEND`, `backends`), and prints its answer.
    Nf {
        nf: String,
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
        words: Vec<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mboxctl: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn run(cli: &Cli) -> Result<()> {
    if let Command::New { name, dir, mbox } = &cli.command {
        return new_plugin(name, dir.as_deref(), mbox.as_deref());
    }
    let Some(socket) = &cli.socket else {
        bail!("no control socket: give --socket PATH (the `[control] socket` of the running mbox's config) or set MBOX_SOCKET");
    };
    let request = match &cli.command {
        Command::Status => json!({ "command": "status" }),
        Command::Stats => json!({ "command": "stats" }),
        Command::Graph { .. } => json!({ "command": "graph" }),
        Command::Subscriptions { nf } => json!({ "command": "subscriptions", "nf": nf }),
        Command::New { .. } => unreachable!("answered above"),
        Command::Reload { nf, path } => {
            // mbox may run elsewhere than here: send an absolute path.
            let path = path.as_ref().map(std::path::absolute).transpose().context("resolving --path")?;
            json!({ "command": "reload", "nf": nf, "path": path })
        }
        Command::Nf { nf, words } => json!({ "command": "nf_command", "nf": nf, "line": words.join(" ") }),
    };
    let result = ask(socket, &request)?;
    if cli.json {
        println!("{}", serde_json::to_string_pretty(&result)?);
        return Ok(());
    }
    match &cli.command {
        Command::Status => print!("{}", status_text(&result)),
        Command::Stats => print!("{}", stats_text(&result)),
        Command::Graph { svg: None } => print!("{}", result["dot"].as_str().unwrap_or_default()),
        Command::Graph { svg: Some(path) } => write_svg(result["dot"].as_str().unwrap_or_default(), path)?,
        Command::Subscriptions { .. } => print!("{}", subscriptions_text(&result)),
        Command::Reload { .. } => println!("{}", reload_text(&result)),
        Command::Nf { .. } => println!("{}", result["answer"].as_str().unwrap_or_default()),
        Command::New { .. } => unreachable!("answered above"),
    }
    Ok(())
}

/// The plugin template (mbox-core/templates/plugin): `{{name}}` is the crate and NF name,
/// `{{type}}` the alert type it publishes; a crate outside the workspace has its own manifest,
/// with `{{mbox}}` the checkout it depends on and the workspace's settings filled in.
const TEMPLATE_CARGO: &str = include_str!("../../templates/plugin/Cargo.toml.in");
const TEMPLATE_CARGO_STANDALONE: &str = include_str!("../../templates/plugin/Cargo.standalone.toml.in");
const TEMPLATE_LIB: &str = include_str!("../../templates/plugin/lib.rs.in");
const TEMPLATE_TEST: &str = include_str!("../../templates/plugin/tests/on_traffic.rs.in");
/// The workspace's manifest: the edition, Rust version and abi_stable version a crate of its
/// own must share with mbox.
const WORKSPACE_MANIFEST: &str = include_str!("../../../Cargo.toml");

/// Whether `dir` is `ROOT/plugins/NAME` in a checkout whose workspace takes `plugins/*`.
fn in_workspace(dir: &Path) -> bool {
    let Ok(dir) = std::path::absolute(dir) else { return false };
    let Some(plugins) = dir.parent().filter(|p| p.file_name().is_some_and(|n| n == "plugins")) else { return false };
    let manifest = plugins.parent().map(|root| root.join("Cargo.toml"));
    manifest.and_then(|m| std::fs::read_to_string(m).ok()).is_some_and(|text| text.contains("\"plugins/*\""))
}

/// The manifest of a crate of its own named `name`, against the mbox checkout `mbox`.
fn standalone_manifest(name: &str, mbox: &Path) -> Result<String> {
    let mbox = std::fs::canonicalize(mbox).with_context(|| format!("the mbox checkout {}", mbox.display()))?;
    if !mbox.join("mbox-abi/Cargo.toml").is_file() {
        bail!("{} is not an mbox checkout (no mbox-abi/Cargo.toml): give --mbox PATH", mbox.display());
    }
    let workspace: toml::Table = WORKSPACE_MANIFEST.parse().context("the workspace manifest")?;
    let get = |path: &[&str]| -> Result<String> {
        let mut v = &workspace["workspace"];
        for key in path {
            v = v.get(key).ok_or_else(|| anyhow!("the workspace manifest has no workspace.{}", path.join(".")))?;
        }
        v.as_str().map(str::to_string).ok_or_else(|| anyhow!("workspace.{} is not a string", path.join(".")))
    };
    let mbox_path = mbox.to_str().ok_or_else(|| anyhow!("{} is not UTF-8", mbox.display()))?;
    Ok(TEMPLATE_CARGO_STANDALONE
        .replace("{{name}}", name)
        .replace("{{mbox}}", mbox_path)
        .replace("{{edition}}", &get(&["package", "edition"])?)
        .replace("{{rust_version}}", &get(&["package", "rust-version"])?)
        .replace("{{abi_stable}}", &get(&["dependencies", "abi_stable"])?))
}

/// `mboxctl new NAME`: writes a plugin crate from the template.
fn new_plugin(name: &str, dir: Option<&Path>, mbox: Option<&Path>) -> Result<()> {
    let valid = name.len() <= 40
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !valid {
        bail!("`{name}` is not a plugin name: lowercase letters, digits and `-`, starting with a letter (at most 40)");
    }
    // Package names the workspace (or cargo) already uses.
    const TAKEN: [&str; 10] = ["mbox-abi", "mbox-core", "mbox-stack", "mbox-sig", "mbox-proto", "dpdk-sys", "test", "core", "std", "alloc"];
    if TAKEN.contains(&name) {
        bail!("`{name}` is taken (a crate of the workspace, or reserved by cargo): choose another name");
    }
    let dir = match dir {
        Some(d) => d.to_path_buf(),
        None => {
            let plugins = Path::new("plugins");
            if !plugins.is_dir() || !Path::new("Cargo.toml").is_file() {
                bail!("no plugins/ here: run `mboxctl new` in the mbox repository, or give --dir");
            }
            plugins.join(name)
        }
    };
    if dir.exists() {
        bail!("{} already exists", dir.display());
    }
    let ty = format!("ALERT/{}", name.to_ascii_uppercase().replace('-', "_"));
    let fill = |text: &str| text.replace("{{name}}", name).replace("{{type}}", &ty);
    let member = in_workspace(&dir);
    let manifest = match member {
        true => fill(TEMPLATE_CARGO),
        false => {
            let built_from = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
            standalone_manifest(name, mbox.unwrap_or(&built_from))?
        }
    };
    std::fs::create_dir_all(dir.join("src")).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::create_dir_all(dir.join("tests"))?;
    std::fs::write(dir.join("Cargo.toml"), manifest)?;
    std::fs::write(dir.join("src/lib.rs"), fill(TEMPLATE_LIB))?;
    std::fs::write(dir.join("tests/on_traffic.rs"), fill(TEMPLATE_TEST))?;
    // The release build: the bundled configs and the walk-through load plugins from
    // target/release, and a debug build there would leave `mboxctl reload` the old library.
    if member {
        println!(
            "created {} (NF `{name}`, publishes {ty}); build it with `cargo build --release -p {name}`, test it inside mbox with `cargo test -p {name}`",
            dir.display()
        );
    } else {
        let lib = format!("{}{}{}", std::env::consts::DLL_PREFIX, name.replace('-', "_"), std::env::consts::DLL_SUFFIX);
        println!(
            "created {} (NF `{name}`, publishes {ty}), a crate of its own: build it with `cargo build --release` there, test it inside mbox with `cargo test`, and load it with `path = \"{}\"` in an [[nf]]",
            dir.display(),
            std::path::absolute(&dir).unwrap_or(dir.clone()).join("target/release").join(lib).display()
        );
    }
    Ok(())
}

/// Sends one request and returns its result, or the server's error.
fn ask(socket: &Path, request: &Value) -> Result<Value> {
    let mut stream = UnixStream::connect(socket).map_err(|e| {
        let at = socket.display();
        match e.kind() {
            ErrorKind::NotFound => anyhow!("no mbox control socket at {at} (is mbox running with `[control] socket` set?)"),
            ErrorKind::PermissionDenied => anyhow!("no permission to talk to mbox at {at}: its socket is its owner's only (mode 0600)"),
            ErrorKind::ConnectionRefused => anyhow!("no mbox is listening at {at} (left by an mbox that ended?)"),
            _ => anyhow!("cannot connect to {at}: {e}"),
        }
    })?;
    // A reload may wait up to a minute for a busy NF, then for the swap itself.
    stream.set_read_timeout(Some(Duration::from_secs(300)))?;
    writeln!(stream, "{request}")?;
    let mut line = String::new();
    BufReader::new(&stream).read_line(&mut line).context("reading the answer")?;
    if line.is_empty() {
        bail!("mbox closed the connection without answering");
    }
    let answer: Value = serde_json::from_str(&line).context("the answer is not JSON")?;
    if answer["ok"] == true {
        Ok(answer["result"].clone())
    } else {
        bail!("{}", answer["error"].as_str().unwrap_or("failed"))
    }
}

fn write_svg(dot: &str, path: &Path) -> Result<()> {
    let mut child = Process::new("dot")
        .args(["-Tsvg", "-o"])
        .arg(path)
        .stdin(Stdio::piped())
        .spawn()
        .context("running graphviz's `dot` (install graphviz, or leave out --svg for DOT text)")?;
    child.stdin.take().expect("piped stdin").write_all(dot.as_bytes())?;
    let status = child.wait()?;
    if !status.success() {
        bail!("`dot` failed ({status})");
    }
    Ok(())
}

/// Thousands separators.
fn n(v: &Value) -> String {
    summary::n(v.as_u64().unwrap_or(0))
}

fn status_text(s: &Value) -> String {
    let mut out = format!(
        "mbox pid {}, up {:.1} s, config {}\ninput: {}\n{} packets, {} shard(s)\n",
        s["pid"],
        s["uptime_s"].as_f64().unwrap_or(0.0),
        s["config"].as_str().unwrap_or("?"),
        s["input"].as_str().unwrap_or("?"),
        n(&s["packets"]),
        s["shards"]
    );
    if let Some(url) = s["metrics"].as_str() {
        out.push_str(&format!("metrics: {url}\n"));
    }
    out.push_str(&format!("{:<16} {:<9} {:>14}  plugin (version)\n", "NF", "state", "events"));
    for nf in s["nfs"].as_array().into_iter().flatten() {
        let reloads = match nf["reloads"].as_u64() {
            Some(0) | None => String::new(),
            Some(k) => format!(", reloaded {k}x"),
        };
        out.push_str(&format!(
            "{:<16} {:<9} {:>14}  {} ({}{reloads})\n",
            nf["name"].as_str().unwrap_or("?"),
            nf["state"].as_str().unwrap_or("?"),
            n(&nf["events"]),
            nf["plugin"].as_str().unwrap_or("?"),
            nf["version"].as_str().unwrap_or("?")
        ));
        if let Some(failure) = nf["failure"].as_str() {
            out.push_str(&format!("    failure: {failure}\n"));
        }
    }
    out
}

fn stats_text(s: &Value) -> String {
    let mut out = format!(
        "up {:.1} s, {:.2} CPU-s; {} packets in, {} forwarded, {} dropped by NFs\n\n",
        s["wall_s"].as_f64().unwrap_or(0.0),
        s["cpu_s"].as_f64().unwrap_or(0.0),
        n(&s["input"]["packets"]),
        n(&s["packets"]["forwarded"]),
        n(&s["packets"]["dropped_by_nf"])
    );
    out.push_str(&format!(
        "{:<6} {:>14} {:>14} {:>10} {:>10} {:>10} {:>8}  ring used per NF\n",
        "shard", "packets", "forwarded", "NF drops", "TCP", "UDP", "other"
    ));
    for sh in s["shards"].as_array().into_iter().flatten() {
        let rings: Vec<String> = sh["ring_used"].as_array().into_iter().flatten().map(|v| v.to_string()).collect();
        out.push_str(&format!(
            "{:<6} {:>14} {:>14} {:>10} {:>10} {:>10} {:>8}  {}\n",
            sh["id"],
            n(&sh["packets"]),
            n(&sh["forwarded"]),
            n(&sh["dropped_by_nf"]),
            n(&sh["tcp_flows"]),
            n(&sh["udp_flows"]),
            n(&sh["other_flows"]),
            rings.join(" ")
        ));
    }
    if let Some(sv) = s["services"].as_object() {
        // Every count the services keep, as the report names them (docs/control.md).
        let counts: Vec<String> = sv.iter().filter(|(_, v)| v.is_u64()).map(|(k, v)| format!("{k} {}", n(v))).collect();
        out.push_str(&format!("\nservices: {}\n", counts.join(", ")));
    }
    out.push_str(&format!(
        "\n{:<16} {:>14} {:>12} {:>12} {:>10} {:>10} {:>10} {:>9} {:>12}\n",
        "NF", "events in", "events out", "verdict drop", "ring full", "disabled", "refused", "ring used", "ns per event"
    ));
    for nf in s["nfs"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "{:<16} {:>14} {:>12} {:>12} {:>10} {:>10} {:>10} {:>9} {:>12.0}\n",
            nf["name"].as_str().unwrap_or("?"),
            n(&nf["events"]),
            n(&nf["published"]),
            n(&nf["verdict_drops"]),
            n(&nf["dropped_ring_full"]),
            n(&nf["dropped_disabled"]),
            n(&nf["publish_refused"]),
            n(&nf["ring_used"]),
            nf["service_ns_per_event"].as_f64().unwrap_or(0.0)
        ));
    }
    for nf in s["nfs"].as_array().into_iter().flatten() {
        for (what, key) in [("in", "events_in"), ("out", "events_out")] {
            let counts: Vec<String> =
                nf[key].as_object().into_iter().flatten().map(|(path, count)| format!("{path} {}", n(count))).collect();
            if !counts.is_empty() {
                out.push_str(&format!("{} events {what}: {}\n", nf["name"].as_str().unwrap_or("?"), counts.join(", ")));
            }
        }
        let own: Vec<String> = nf["counters"].as_object().into_iter().flatten().map(|(name, v)| format!("{name} {}", n(v))).collect();
        if !own.is_empty() {
            out.push_str(&format!("{} counters: {}\n", nf["name"].as_str().unwrap_or("?"), own.join(", ")));
        }
    }
    out
}

fn reload_text(r: &Value) -> String {
    let old = if r["replaced_failed"] == true {
        format!("the old instance had failed: the {} events queued for it were counted as dropped", n(&r["drained"]))
    } else {
        let handed = match (r["state_bytes"].as_u64(), r["finish_error"].as_str()) {
            (Some(bytes), _) => format!("handed {bytes} bytes of state to the new one"),
            (None, None) => "had no state to hand over and finished".to_string(),
            (None, Some(e)) => format!("had no state to hand over; finishing, it reported: {e}"),
        };
        format!("the old instance handled the {} events queued for it and {handed}", n(&r["drained"]))
    };
    let mut text = format!(
        "reloaded {} from {} (version {}): {old}; the NF paused {:.2} ms",
        r["nf"].as_str().unwrap_or("?"),
        r["plugin"].as_str().unwrap_or("?"),
        r["version"].as_str().unwrap_or("?"),
        r["pause_ms"].as_f64().unwrap_or(0.0)
    );
    if r["identical"] == true {
        text.push_str(
            "\nWARNING: that library is byte for byte the one that was running: the NF runs the same code (its arguments \
             and files read again). To run new code, rebuild what mbox loads (cargo build --release -p NAME, for the \
             default plugin_dir) or give --path.",
        );
    }
    text
}

fn subscriptions_text(s: &Value) -> String {
    let list = |key: &str| s[key].as_array().into_iter().flatten().filter_map(|v| v.as_str()).collect::<Vec<_>>().join(", ");
    let mut out = format!(
        "{} ({})\nsubscribes: {}\npublishes: {}\nper-flow unsubscriptions so far: {}\n",
        s["name"].as_str().unwrap_or("?"),
        if s["read_only"] == true { "read-only" } else { "may drop or modify" },
        list("subscribes"),
        if s["publishes"].as_array().is_some_and(|a| a.is_empty()) { "nothing".to_string() } else { list("publishes") },
        n(&s["flow_unsubscriptions"])
    );
    if s["subscribes_per_flow"].as_array().is_some_and(|a| !a.is_empty()) {
        out.push_str(&format!(
            "per flow, when it asks: {} (subscriptions so far: {})\n",
            list("subscribes_per_flow"),
            n(&s["flow_subscriptions"])
        ));
    }
    out.push_str("routes (event type: stage of stages):\n");
    for r in s["routes"].as_array().into_iter().flatten() {
        out.push_str(&format!("  {}: {} of {}\n", r["type"].as_str().unwrap_or("?"), r["stage"], r["stages"]));
    }
    out
}
