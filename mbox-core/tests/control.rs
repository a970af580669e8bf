//! The control plane end to end: a real `mbox run` with a control socket, driven by the real
//! `mboxctl` binary — status, live stats, graph, subscriptions, several clients at once, a
//! panicking NF showing in status, and the errors a user meets.

mod common;

use common::*;
use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

/// A running `mbox run` and its control socket.
struct Running {
    child: Option<Child>,
    socket: PathBuf,
    _dir: tempfile::TempDir,
}

impl Running {
    /// Starts mbox on generated traffic (far more than the test needs; it is stopped) with the
    /// NFs of `nfs` (TOML), and waits for the socket.
    fn start(nfs: &str) -> Running {
        Running::start_with(nfs, "")
    }

    /// As [`Running::start`], with more `[control]` keys.
    fn start_with(nfs: &str, control: &str) -> Running {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("mbox.sock");
        let config = dir.path().join("run.toml");
        std::fs::write(
            &config,
            format!(
                "plugin_dir = {}\n[input]\ngenerator = {{ flows = 50000000, concurrency = 2000 }}\n[runtime]\nshards = 2\n\
                 [control]\nsocket = {}\n{control}\n{nfs}",
                toml_path(&plugin_dir()),
                toml_path(&socket)
            ),
        )
        .unwrap();
        let report = dir.path().join("report.json");
        let child = Command::new(env!("CARGO_BIN_EXE_mbox"))
            .args(["run", config.to_str().unwrap(), "--quiet", "--report", report.to_str().unwrap()])
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let running = Running { child: Some(child), socket, _dir: dir };
        let started = Instant::now();
        while !running.socket.exists() {
            assert!(started.elapsed() < Duration::from_secs(20), "no control socket after 20 s");
            std::thread::sleep(Duration::from_millis(20));
        }
        running
    }

    /// Runs mboxctl against this mbox.
    fn ctl(&self, args: &[&str]) -> Output {
        mboxctl(&self.socket, args)
    }

    /// Runs mboxctl with --json and parses its answer (which must succeed).
    fn json(&self, args: &[&str]) -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let out = self.ctl(&all);
        assert!(out.status.success(), "mboxctl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// Stops mbox as Ctrl-C would; returns its report.
    fn stop(self) -> Value {
        self.stop_with(0)
    }

    /// Stops it; its exit status must be `code`.
    fn stop_with(mut self, code: i32) -> Value {
        let mut child = self.child.take().unwrap();
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let status = child.wait().unwrap();
        assert_eq!(status.code(), Some(code), "mbox exited with {status}");
        assert!(!self.socket.exists(), "the socket is removed at the end");
        serde_json::from_str(&std::fs::read_to_string(self._dir.path().join("report.json")).unwrap()).unwrap()
    }

    /// Waits until NF `nf` has handled more than `events` events.
    fn wait_for_events(&self, nf: usize, events: u64) -> Value {
        let started = Instant::now();
        loop {
            let stats = self.json(&["stats"]);
            if stats["nfs"][nf]["events"].as_u64() > Some(events) {
                return stats;
            }
            assert!(started.elapsed() < Duration::from_secs(30), "NF {nf} stuck at {}", stats["nfs"][nf]);
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Running {
    /// A failed test still ends its mbox.
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn mboxctl(socket: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mboxctl")).arg("--socket").arg(socket).args(args).output().unwrap()
}

/// Exactly one line on stderr, and a failure exit.
fn one_line_failure(out: &Output) -> String {
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    err
}

#[test]
fn mboxctl_reads_a_running_mbox() {
    let nfs = "[[nf]]\nplugin = \"flow-stats\"\nargs = { output = \"/dev/null\" }\n\
               [[nf]]\nplugin = \"heavy-hitter\"\nargs = { threshold_bytes = 2000 }\n\
               [[nf]]\nplugin = \"logger\"\nsubscribe = [\"FLOW/TCP/NEW\", \"ALERT\"]\nargs = { output = \"/dev/null\" }\n";
    let mbox = Running::start(nfs);
    let mode = std::fs::metadata(&mbox.socket).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "only the owner may talk to mbox");

    let status = mbox.json(&["status"]);
    assert_eq!(status["shards"], 2);
    let names: Vec<&str> = status["nfs"].as_array().unwrap().iter().map(|nf| nf["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["flow-stats", "heavy-hitter", "logger"]);
    assert!(status["nfs"].as_array().unwrap().iter().all(|nf| nf["state"] == "running" && nf["version"] == "0.1.0"));

    // Live: the counters move while traffic runs.
    let first = mbox.json(&["stats"]);
    std::thread::sleep(Duration::from_millis(300));
    let second = mbox.json(&["stats"]);
    let packets = |s: &Value| s["shards"].as_array().unwrap().iter().map(|sh| sh["packets"].as_u64().unwrap()).sum::<u64>();
    assert!(packets(&second) > packets(&first), "{} then {}", packets(&first), packets(&second));
    let nf = |s: &Value, i: usize| s["nfs"][i].clone();
    // Events in by type add up to the events delivered; heavy-hitter's alerts are its events
    // out, and they reach the logger.
    for i in 0..3 {
        let by_type: u64 = nf(&second, i)["events_in"].as_object().unwrap().values().map(|v| v.as_u64().unwrap()).sum();
        assert_eq!(by_type, nf(&second, i)["delivered"].as_u64().unwrap(), "{}", nf(&second, i));
    }
    let alerts = nf(&second, 1)["events_out"]["ALERT/HEAVY_HITTER"].as_u64().unwrap_or(0);
    assert!(alerts > 0, "{}", nf(&second, 1));
    assert!(nf(&second, 2)["events_in"]["FLOW/TCP/NEW"].as_u64() > Some(0));
    assert!(nf(&second, 0)["service_ns_per_event"].as_f64() > Some(0.0));

    // People's output says the same.
    let text = String::from_utf8(mbox.ctl(&["stats"]).stdout).unwrap();
    assert!(text.contains("heavy-hitter events out: ALERT/HEAVY_HITTER"), "{text}");
    let text = String::from_utf8(mbox.ctl(&["status"]).stdout).unwrap();
    assert!(text.contains("flow-stats") && text.contains("running"), "{text}");

    // An NF that takes no commands says so, through its own thread; an unknown NF is named.
    let err = one_line_failure(&mbox.ctl(&["nf", "flow-stats", "drain", "web1"]));
    assert!(err.contains("this NF takes no commands (got `drain web1`)"), "{err}");
    let err = one_line_failure(&mbox.ctl(&["nf", "nobody", "hello"]));
    assert!(err.contains("no NF named `nobody`"), "{err}");

    let dot = String::from_utf8(mbox.ctl(&["graph"]).stdout).unwrap();
    assert!(dot.starts_with("digraph mbox {") && dot.contains("nf1 -> nf2 [label=\"ALERT\"]"), "{dot}");
    // SVG through graphviz where it is installed (tools/test.sh installs it), else one line.
    let svg = mbox._dir.path().join("graph.svg");
    let out = mbox.ctl(&["graph", "--svg", svg.to_str().unwrap()]);
    if Command::new("dot").arg("-V").output().is_ok() {
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let text = std::fs::read_to_string(&svg).unwrap();
        assert!(text.contains("<svg") && text.contains("heavy&#45;hitter"), "{text}");
    } else {
        skip(
            "mboxctl graph --svg through graphviz",
            "graphviz is not installed (apt-get install graphviz); checked the one-line refusal only",
        );
        assert!(one_line_failure(&out).contains("install graphviz"));
    }
    let subs = mbox.json(&["subscriptions", "logger"]);
    assert_eq!(subs["subscribes"], serde_json::json!(["FLOW/TCP/NEW", "ALERT"]));
    assert!(subs["routes"].as_array().unwrap().iter().any(|r| r["type"] == "ALERT/HEAVY_HITTER"), "{subs}");

    // Several clients at once all get their answers.
    let threads: Vec<_> = (0..12)
        .map(|i| {
            let socket = mbox.socket.clone();
            std::thread::spawn(move || mboxctl(&socket, &["--json", if i % 2 == 0 { "stats" } else { "status" }]))
        })
        .collect();
    for t in threads {
        let out = t.join().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice::<Value>(&out.stdout).unwrap();
    }

    // Another user may not talk to mbox (as root, try as nobody).
    if unsafe { libc::geteuid() } == 0 && Path::new("/usr/bin/setpriv").exists() {
        let out = Command::new("/usr/bin/setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", env!("CARGO_BIN_EXE_mboxctl"), "-s"])
            .arg(&mbox.socket)
            .arg("status")
            .output()
            .unwrap();
        let err = one_line_failure(&out);
        assert!(err.starts_with("mboxctl: no permission to talk to mbox at "), "{err}");
    }

    // Mistakes: an unknown NF, and a second mbox on the same socket.
    let err = one_line_failure(&mbox.ctl(&["subscriptions", "nope"]));
    assert!(err.contains("no NF named `nope` (NFs: flow-stats, heavy-hitter, logger)"), "{err}");
    let err = one_line_failure(&mbox.ctl(&["reload", "flow-stat"]));
    assert!(err.contains("; did you mean `flow-stats`?"), "{err}");
    let second_mbox = Command::new(env!("CARGO_BIN_EXE_mbox"))
        .args(["run", mbox._dir.path().join("run.toml").to_str().unwrap(), "--quiet"])
        .output()
        .unwrap();
    assert!(!second_mbox.status.success());
    assert!(String::from_utf8_lossy(&second_mbox.stderr).contains("another mbox is listening there"));
    mbox.stop();
}

#[test]
fn a_panicking_nf_shows_in_status_and_the_host_keeps_answering() {
    let mbox = Running::start(
        "[[nf]]\nplugin = \"test-faults\"\nargs = { panic_after = 1000 }\n[[nf]]\nplugin = \"flow-stats\"\nargs = { output = \"/dev/null\" }\n",
    );
    let started = Instant::now();
    let faulty = loop {
        let status = mbox.json(&["status"]);
        if status["nfs"][0]["state"] == "disabled" {
            break status["nfs"][0].clone();
        }
        assert!(started.elapsed() < Duration::from_secs(20), "the panic never showed: {status}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(faulty["failure"].as_str().unwrap().contains("deliberate panic at event 1000"), "{faulty}");
    let text = String::from_utf8(mbox.ctl(&["status"]).stdout).unwrap();
    assert!(text.contains("disabled") && text.contains("failure: panicked"), "{text}");
    // The NF beside it still runs, and so does traffic.
    let before = mbox.json(&["stats"]);
    std::thread::sleep(Duration::from_millis(200));
    let after = mbox.json(&["stats"]);
    assert!(after["nfs"][1]["events"].as_u64() > before["nfs"][1]["events"].as_u64());
    assert!(after["nfs"][0]["dropped_disabled"].as_u64() > Some(0));
    // A reload replaces the disabled instance: the new one handles events again (until it,
    // too, reaches its deliberate panic).
    let handled = after["nfs"][0]["events"].as_u64().unwrap();
    let reloaded = mbox.json(&["reload", "test-faults"]);
    assert_eq!(reloaded["state_bytes"], Value::Null, "a failed instance hands nothing over");
    assert_eq!(reloaded["replaced_failed"], true);
    mbox.wait_for_events(0, handled);
    // Revived, but an NF was disabled during the run: the exit status says so.
    let report = mbox.stop_with(5);
    let revived = &report["nfs"][0];
    assert!(revived["events"].as_u64() > Some(handled) && revived["reloads"] == 1, "{revived}");
    assert!(revived["failures"].as_u64() >= Some(1), "{revived}");
}

#[test]
fn reload_under_load_loses_no_event_and_flow_counts_continue() {
    let out = tempfile::tempdir().unwrap();
    let (flows, eve) = (out.path().join("flows.jsonl"), out.path().join("eve.jsonl"));
    let mbox = Running::start(&format!(
        "[[nf]]\nplugin = \"flow-stats\"\nargs = {{ output = {} }}\n\
         [[nf]]\nplugin = \"logger\"\nsubscribe = [\"FLOW/TCP/NEW\"]\nargs = {{ output = {} }}\n",
        toml_path(&flows),
        toml_path(&eve)
    ));
    let before = mbox.wait_for_events(0, 20_000);
    let text = String::from_utf8(mbox.ctl(&["reload", "flow-stats"]).stdout).unwrap();
    assert!(text.starts_with("reloaded flow-stats from ") && text.contains("bytes of state to the new one"), "{text}");
    // Nothing was rebuilt: the same bytes, said loudly (an author who rebuilt another profile
    // than mbox loads would otherwise think the new code runs).
    assert!(text.contains("WARNING: that library is byte for byte the one that was running"), "{text}");
    let text = String::from_utf8(mbox.ctl(&["reload", "logger"]).stdout).unwrap();
    assert!(text.contains("had no state to hand over and finished"), "{text}");
    let again = mbox.json(&["reload", "flow-stats"]);
    assert!(again["state_bytes"].as_u64() > Some(0) && again["identical"] == true, "{again}");
    // The counters go on from where they were.
    let after = mbox.wait_for_events(0, before["nfs"][0]["events"].as_u64().unwrap() + 1000);
    assert!(after["nfs"][0]["delivered"].as_u64() >= before["nfs"][0]["delivered"].as_u64());
    let status = String::from_utf8(mbox.ctl(&["status"]).stdout).unwrap();
    assert!(status.contains("reloaded 2x") && status.contains("reloaded 1x"), "{status}");
    let report = mbox.stop();

    let (fs, logger) = (&report["nfs"][0], &report["nfs"][1]);
    assert_eq!((fs["reloads"].as_u64(), logger["reloads"].as_u64()), (Some(2), Some(1)));
    for nf in [fs, logger] {
        assert_eq!(nf["events"], nf["delivered"], "every event delivered was handled: {nf}");
        assert_eq!((nf["dropped_disabled"].as_u64(), nf["dropped_ring_full"].as_u64()), (Some(0), Some(0)), "{nf}");
    }
    // flow-stats wrote every flow once, whole: its packets add up to the PKT events it got,
    // although three instances counted them.
    let lines = read_jsonl(&flows);
    let flows_seen = ["tcp", "udp", "other"].iter().map(|k| report["flows"][k].as_u64().unwrap()).sum::<u64>();
    assert_eq!(lines.len() as u64, flows_seen);
    let ids: std::collections::HashSet<u64> = lines.iter().map(|l| l["flow_id"].as_u64().unwrap()).collect();
    assert_eq!(ids.len(), lines.len(), "no flow written twice");
    let packets: u64 = lines.iter().map(|l| l["c2s"]["pkts"].as_u64().unwrap() + l["s2c"]["pkts"].as_u64().unwrap()).sum();
    let pkt_events: u64 =
        fs["events_in"].as_object().unwrap().iter().filter(|(path, _)| path.starts_with("PKT")).map(|(_, n)| n.as_u64().unwrap()).sum();
    assert_eq!(packets, pkt_events);
    // The logger's new instance appended to the old one's file.
    assert_eq!(read_jsonl(&eve).len() as u64, logger["events"].as_u64().unwrap());
}

#[test]
fn a_build_the_graph_cannot_take_is_refused_and_the_old_instance_keeps_running() {
    let mbox = Running::start("[[nf]]\nplugin = \"flow-stats\"\nargs = { output = \"/dev/null\" }\n");
    let old_abi = old_abi_plugin();
    let err = one_line_failure(&mbox.ctl(&["reload", "flow-stats", "--path", old_abi.to_str().unwrap()]));
    assert!(err.contains("was built against a different mbox-abi") && err.contains("the running instance is unchanged"), "{err}");
    assert!(err.contains(old_abi.to_str().unwrap()), "the message names the file given, not the copy: {err}");
    let logger = plugin_dir().join(format!("{}logger{}", std::env::consts::DLL_PREFIX, std::env::consts::DLL_SUFFIX));
    let err = one_line_failure(&mbox.ctl(&["reload", "flow-stats", "--path", logger.to_str().unwrap()]));
    assert!(err.contains("is plugin `logger`, not `flow-stats`"), "{err}");
    let err = one_line_failure(&mbox.ctl(&["reload", "nope"]));
    assert!(err.contains("no NF named `nope`"), "{err}");
    let status = mbox.json(&["status"]);
    assert_eq!((&status["nfs"][0]["state"], &status["nfs"][0]["reloads"]), (&Value::from("running"), &Value::from(0)));
    let events = status["nfs"][0]["events"].as_u64().unwrap();
    mbox.wait_for_events(0, events);
    mbox.stop();
}

#[test]
fn mboxctl_without_a_running_mbox_says_so_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let err = one_line_failure(&mboxctl(&dir.path().join("none.sock"), &["status"]));
    assert!(err.contains("no mbox control socket at") && err.contains("none.sock"), "{err}");
    // No socket given at all.
    let out = Command::new(env!("CARGO_BIN_EXE_mboxctl")).arg("status").env_remove("MBOX_SOCKET").output().unwrap();
    let err = one_line_failure(&out);
    assert!(err.contains("give --socket PATH"), "{err}");
    // A file that is not a socket.
    let file = dir.path().join("file");
    std::fs::write(&file, "").unwrap();
    let err = one_line_failure(&mboxctl(&file, &["status"]));
    assert!(err.contains("no mbox is listening at"), "{err}");
    // A socket left behind by an mbox that ended.
    let stale = dir.path().join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    let err = one_line_failure(&mboxctl(&stale, &["status"]));
    assert!(err.contains("no mbox is listening at"), "{err}");
}

/// GET `url`'s path from its host over plain HTTP; returns the status line and the body.
fn http_get(url: &str) -> (String, String) {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_once('/').unwrap();
    let mut stream = std::net::TcpStream::connect(host).unwrap();
    write!(stream, "GET /{path} HTTP/1.1\r\nHost: {host}\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    (head.lines().next().unwrap().to_string(), body.to_string())
}

/// A sample's value in Prometheus text, by its name and labels as written.
fn sample(text: &str, series: &str) -> f64 {
    let line =
        text.lines().find(|l| l.split_once(' ').is_some_and(|(s, _)| s == series)).unwrap_or_else(|| panic!("no {series} in:\n{text}"));
    line.rsplit_once(' ').unwrap().1.parse().unwrap()
}

#[test]
fn prometheus_metrics_pass_promtool_and_agree_with_stats() {
    let nfs = format!(
        "[[nf]]\nplugin = \"flow-stats\"\nargs = {{ output = \"/dev/null\" }}\n[[nf]]\nplugin = \"heavy-hitter\"\nargs = {{ threshold_bytes = 2000 }}\n\
         [[nf]]\nplugin = \"sig-match\"\nargs = {{ rules = {} }}\n\
         [[nf]]\nname = \"web\"\nplugin = \"http-server\"\nargs = {{ generated = {{ \"/x\" = 1 }} }}\n\
         [[service]]\naddress = \"198.18.255.80\"\nport = 80\nnfs = [\"web\"]\n",
        toml_path(&repo().join("testdata/rules/custom.rules"))
    );
    let mbox = Running::start_with(&nfs, "metrics = \"127.0.0.1:0\"");
    mbox.wait_for_events(0, 10_000);
    mbox.wait_for_events(2, 10_000);
    // An NF's own counters, while it runs: in stats (JSON and text) and in the metrics.
    let stats = mbox.json(&["stats"]);
    assert!(stats["nfs"][2]["counters"]["bytes_inspected"].as_u64().unwrap() > 0, "{}", stats["nfs"][2]);
    let text_stats = String::from_utf8(mbox.ctl(&["stats"]).stdout).unwrap();
    assert!(text_stats.contains("sig-match counters: alerts "), "{text_stats}");
    let url = mbox.json(&["status"])["metrics"].as_str().expect("status gives the metrics URL").to_string();
    let (status, text) = http_get(&url);
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert_eq!(sample(&text, "mbox_nf_up{nf=\"flow-stats\"}"), 1.0);
    assert!(sample(&text, "mbox_nf_events_total{nf=\"flow-stats\"}") >= 10_000.0);
    // Nobody subscribes to heavy-hitter's alerts here: the host refuses them as such.
    assert!(sample(&text, "mbox_nf_publish_refused_total{nf=\"heavy-hitter\",reason=\"no_subscriber\"}") > 0.0);
    assert!(sample(&text, "mbox_shard_packets_total{shard=\"1\"}") > 0.0);
    // How close to full each ring is: its capacity beside its use.
    let capacity = sample(&text, "mbox_nf_ring_capacity{nf=\"flow-stats\",shard=\"1\"}");
    assert!(capacity >= 64.0 && sample(&text, "mbox_nf_ring_used{nf=\"flow-stats\",shard=\"1\"}") <= capacity, "{capacity}");
    assert_eq!(sample(&text, "mbox_nf_dropped_total{nf=\"flow-stats\",cause=\"disabled\"}"), 0.0);
    assert!(sample(&text, "mbox_nf_stat{nf=\"sig-match\",name=\"bytes_inspected\"}") > 0.0);
    assert_eq!(sample(&text, "mbox_nf_stat{nf=\"sig-match\",name=\"directions_over_memory\"}"), 0.0);
    // A service's counters (nothing comes to its address here) and its NF, which sees no
    // other flow's events.
    assert_eq!(sample(&text, "mbox_shard_service_connections{shard=\"0\"}"), 0.0);
    assert_eq!(sample(&text, "mbox_shard_service_total{shard=\"0\",what=\"accepted\"}"), 0.0);
    assert_eq!(sample(&text, "mbox_nf_events_total{nf=\"web\"}"), 0.0);
    // The operator's basics, every label value there from the start.
    let dpdk = cfg!(feature = "dpdk");
    let build = format!(
        "mbox_build_info{{version=\"{0}\",commit=\"{1}\",abi=\"{0}\",dpdk=\"{dpdk}\"}}",
        env!("CARGO_PKG_VERSION"),
        env!("MBOX_COMMIT")
    );
    assert_eq!(sample(&text, &build), 1.0);
    assert!(sample(&text, "mbox_input_bytes_total") > 0.0);
    assert_eq!(sample(&text, "mbox_input_missed_total"), 0.0, "a capture misses nothing");
    assert_eq!(sample(&text, "mbox_input_rolled_over_total"), 0.0, "nor puts a packet on another shard");
    assert_eq!(sample(&text, "mbox_shard_quic_flights_total{shard=\"0\",outcome=\"refused\"}"), 0.0, "no QUIC flight refused");
    assert!(sample(&text, "mbox_shard_flows_active{shard=\"0\"}") > 0.0);
    assert_eq!(sample(&text, "mbox_shard_flows_ended_total{shard=\"1\",reason=\"evicted\"}"), 0.0);
    assert!(text.contains("mbox_shard_malformed_total{shard=\"0\",cause=\""), "{text}");
    assert!(text.contains("mbox_shard_stream_bytes_total{shard=\"0\",kind=\"gap\"}"), "{text}");
    assert!(sample(&text, "process_resident_memory_bytes") > 1e6 && sample(&text, "process_open_fds") > 3.0);
    assert_eq!(http_get(&url.replace("/metrics", "/other")).0, "HTTP/1.1 404 Not Found");
    let report = mbox.stop();
    // Counters only grow: the final report has at least what the endpoint showed.
    assert!(report["nfs"][0]["events"].as_f64().unwrap() >= sample(&text, "mbox_nf_events_total{nf=\"flow-stats\"}"));

    // A real parser: promtool (Debian's `prometheus` package; tools/test.sh installs it).
    let promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let Ok(mut promtool) = promtool else {
        skip("the metrics lint (promtool)", "promtool is not installed (apt-get install prometheus)");
        return;
    };
    use std::io::Write;
    promtool.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = promtool.wait_with_output().unwrap();
    assert!(out.status.success(), "promtool: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    the_dashboard_asks_for_what_mbox_exposes(&text);
}

/// The Grafana dashboard (configs/grafana/mbox-dashboard.json) is whole (every panel placed,
/// titled and on the dashboard's Prometheus variable), asks only for metric families mbox
/// exposes (`metrics`, a scrape of a run with NFs and a service), and every query of its panels
/// and variables parses as PromQL: promtool checks them as recording rules, Grafana's
/// variables given values.
fn the_dashboard_asks_for_what_mbox_exposes(metrics: &str) {
    let path = repo().join("configs/grafana/mbox-dashboard.json");
    let dash: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).expect("the dashboard is JSON");
    assert!(dash["schemaVersion"].as_u64() >= Some(36) && dash["uid"].is_string(), "{}", dash["schemaVersion"]);
    let families: std::collections::HashSet<&str> =
        metrics.lines().filter_map(|l| l.strip_prefix("# TYPE ")).filter_map(|l| l.split_whitespace().next()).collect();
    let mut queries: Vec<String> = Vec::new();
    let mut ids = std::collections::HashSet::new();
    for panel in dash["panels"].as_array().unwrap() {
        let title = panel["title"].as_str().unwrap_or_default();
        assert!(!title.is_empty() && ids.insert(panel["id"].as_u64().unwrap()), "a panel without a title or with a repeated id: {panel}");
        let g = &panel["gridPos"];
        assert!(g["x"].as_u64().unwrap() + g["w"].as_u64().unwrap() <= 24 && g["h"].as_u64() > Some(0), "{title}: {g}");
        if panel["type"] == "row" {
            continue;
        }
        assert_eq!(panel["datasource"]["uid"], "${datasource}", "{title}");
        let targets = panel["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{title} has no query");
        queries.extend(targets.iter().map(|t| t["expr"].as_str().unwrap().to_string()));
    }
    for var in dash["templating"]["list"].as_array().unwrap().iter().filter(|v| v["type"] == "query") {
        // label_values(METRIC{...}, LABEL) is Grafana's, not PromQL: its selector is.
        let q = var["query"]["query"].as_str().unwrap();
        let selector = q.strip_prefix("label_values(").and_then(|r| r.rsplit_once(',')).map(|(m, _)| m).unwrap();
        queries.push(selector.to_string());
    }
    for q in &queries {
        let names = q.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'));
        for name in names.filter(|n| n.starts_with("mbox_") || n.starts_with("process_")) {
            assert!(families.contains(name), "the dashboard asks for {name}, which mbox does not expose (in {q})");
        }
    }
    let Ok(_) = Command::new("promtool").arg("--version").output() else { return };
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, q) in queries.iter().enumerate() {
        let q = q.replace("$__rate_interval", "5m").replace("$instance", ".*").replace("$nf", ".*");
        rules.push_str(&format!("      - record: dashboard:query_{i}\n        expr: {}\n", serde_json::to_string(&q).unwrap()));
    }
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), rules).unwrap();
    let out = Command::new("promtool").args(["check", "rules"]).arg(file.path()).output().unwrap();
    assert!(out.status.success(), "promtool check rules: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
}

#[test]
fn mboxctl_new_writes_a_plugin_crate_and_refuses_bad_names() {
    let dir = tempfile::tempdir().unwrap();
    let ctl = |args: &[&str]| Command::new(env!("CARGO_BIN_EXE_mboxctl")).current_dir(dir.path()).args(args).output().unwrap();
    let err = one_line_failure(&ctl(&["new", "Bad_Name"]));
    assert!(err.contains("is not a plugin name"), "{err}");
    let err = one_line_failure(&ctl(&["new", "fine"]));
    assert!(err.contains("no plugins/ here"), "{err}");
    let out = ctl(&["new", "rate-meter", "--dir", "rm"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lib = std::fs::read_to_string(dir.path().join("rm/src/lib.rs")).unwrap();
    assert!(lib.contains("name: \"rate-meter\"") && lib.contains("publishes: &[\"ALERT/RATE_METER\"]"), "{lib}");
    assert!(!lib.contains("{{"), "every placeholder filled");
    assert!(std::fs::read_to_string(dir.path().join("rm/Cargo.toml")).unwrap().contains("name = \"rate-meter\""));
    let err = one_line_failure(&ctl(&["new", "rate-meter", "--dir", "rm"]));
    assert!(err.contains("already exists"), "{err}");
}

/// `mboxctl new --dir` outside the workspace makes a crate of its own (its manifest names the
/// checkout and the workspace's edition and abi_stable), which builds and whose generated test
/// runs the plugin inside mbox and passes. Built into the workspace's target directory with
/// the workspace's lock file, so that only the crate itself and mbox's own crates compile.
#[test]
fn a_plugin_made_outside_the_workspace_builds_and_passes_its_own_test() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_mboxctl"))
        .current_dir(dir.path())
        .args(["new", "pkt-count", "--dir", "pkt-count"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("a crate of its own") && said.contains("target/release/libpkt_count.so"), "{said}");
    let crate_dir = dir.path().join("pkt-count");
    let manifest = std::fs::read_to_string(crate_dir.join("Cargo.toml")).unwrap();
    let checkout = std::fs::canonicalize(repo()).unwrap();
    assert!(
        manifest.contains(&format!("path = \"{}/mbox-abi\"", checkout.display())) && manifest.contains("\n[workspace]\n"),
        "{manifest}"
    );
    assert!(!manifest.contains("{{") && !manifest.contains(".workspace"), "{manifest}");
    std::fs::copy(repo().join("Cargo.lock"), crate_dir.join("Cargo.lock")).unwrap();
    let out = Command::new(env!("CARGO"))
        .current_dir(&crate_dir)
        .args(["test", "--offline", "--quiet"])
        .env("CARGO_TARGET_DIR", repo().join("target"))
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "cargo test in the generated crate: {text}");
    assert!(text.contains("long_flows_are_reported_once_each_and_short_ones_not") || text.contains("1 passed"), "{text}");
}

#[test]
fn a_control_socket_path_holding_another_file_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let precious = dir.path().join("notes.txt");
    std::fs::write(&precious, "keep me").unwrap();
    let capture = pcaps().join("ndpi__http_ipv6.pcap");
    let e = try_run_toml(&format!("[input]\npcap = {}\n[control]\nsocket = {}\n", toml_path(&capture), toml_path(&precious))).unwrap_err();
    assert!(e.contains("a file that is not a socket is there"), "{e}");
    assert_eq!(std::fs::read_to_string(&precious).unwrap(), "keep me");
}

#[test]
fn mbox_version_names_its_commit_its_plugin_abi_and_dpdk() {
    let out = Command::new(env!("CARGO_BIN_EXE_mbox")).arg("--version").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success() && text.starts_with(&format!("mbox {} (commit ", env!("CARGO_PKG_VERSION"))), "{text}");
    // The commit this checkout is at (when it is one: a source tarball says "unknown").
    let head = Command::new("git").args(["rev-parse", "--short=12", "HEAD"]).current_dir(env!("CARGO_MANIFEST_DIR")).output();
    if let Some(head) = head.ok().filter(|h| h.status.success()) {
        let head = String::from_utf8_lossy(&head.stdout).trim().to_string();
        assert!(text.contains(&format!("commit {head}")), "{text} (HEAD is {head})");
    }
    assert!(text.contains("plugins: mbox-abi ") && text.contains("DPDK: "), "{text}");
}

/// An NF's panic prints its message and place, not a backtrace, even with `RUST_BACKTRACE` set:
/// the plugin's own std would keep some 80 MiB of debug information per library copy for it
/// (docs/performance.md, "Soak"). `MBOX_NF_BACKTRACE=1` asks for std's backtrace again.
#[test]
fn an_nf_panic_prints_no_backtrace_unless_asked() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("run.toml");
    std::fs::write(
        &config,
        format!(
            "plugin_dir = {}\n[input]\ngenerator = {{ flows = 2000 }}\n[[nf]]\nplugin = \"test-faults\"\nargs = {{ panic_after = 100 }}\n",
            toml_path(&plugin_dir())
        ),
    )
    .unwrap();
    for (asked, backtrace) in [(None, false), (Some("1"), true)] {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_mbox"));
        cmd.args(["run", config.to_str().unwrap(), "--quiet"]).env("RUST_BACKTRACE", "1");
        match asked {
            Some(v) => cmd.env("MBOX_NF_BACKTRACE", v),
            None => cmd.env_remove("MBOX_NF_BACKTRACE"),
        };
        let out = cmd.output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("panicked at plugins/test-faults/src/lib.rs"), "{err}");
        assert_eq!(err.contains("stack backtrace"), backtrace, "MBOX_NF_BACKTRACE={asked:?}: {err}");
    }
}
