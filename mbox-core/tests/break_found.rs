//! What trying to break mbox found, each kept from coming back: truncated plugins, absurd
//! sizes, endless configs, outputs that clobber inputs or each other, clients that starve the
//! control socket, and signals during start-up. Every test runs the real binaries.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn mboxctl(socket: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mboxctl")).arg("--socket").arg(socket).args(args).output().unwrap()
}

/// Runs `mbox ARGS`, killing it after `limit`; returns its output and how long it took.
fn mbox_within(args: &[&str], limit: Duration) -> (Output, Duration) {
    let started = Instant::now();
    let mut child = mbox().args(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > limit {
            child.kill().unwrap();
            let out = child.wait_with_output().unwrap();
            panic!("mbox {args:?} still ran after {limit:?}; stderr: {}", String::from_utf8_lossy(&out.stderr));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    (child.wait_with_output().unwrap(), started.elapsed())
}

/// The one line a failed command printed on stderr, after checking its exit status.
fn one_line_error(out: &Output, code: i32) -> String {
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(code), "stderr: {err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    err
}

/// A plugin library of this build.
fn plugin(name: &str) -> PathBuf {
    mbox_core::plugin::library_path(&plugin_dir(), name)
}

/// A copy of a real plugin cut inside its loadable segments, as a library still being written
/// is (the first 400 KB of a plugin are code and read-only data, debug build or release).
fn truncated_plugin(dir: &Path, name: &str) -> PathBuf {
    let bytes = std::fs::read(plugin(name)).unwrap();
    let cut = dir.join(format!("lib{}.so", name.replace('-', "_")));
    std::fs::write(&cut, &bytes[..400_000.min(bytes.len() / 2)]).unwrap();
    cut
}

/// `mboxctl --json status`, which must succeed.
fn status(socket: &Path) -> serde_json::Value {
    let out = mboxctl(socket, &["--json", "status"]);
    assert!(out.status.success(), "status: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A running `mbox run` on endless generated traffic, with a control socket.
struct Running {
    child: Option<Child>,
    socket: PathBuf,
    dir: tempfile::TempDir,
}

impl Running {
    /// Starts mbox with the NFs of `nfs` and more `[control]` keys; waits for the socket.
    fn start(nfs: &str, control: &str) -> Running {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("mbox.sock");
        let config = dir.path().join("run.toml");
        std::fs::write(
            &config,
            format!(
                "plugin_dir = {}\n[input]\ngenerator = {{ flows = 50000000, concurrency = 200 }}\n\
                 [control]\nsocket = {}\n{control}\n{nfs}",
                toml_path(&plugin_dir()),
                toml_path(&socket)
            ),
        )
        .unwrap();
        let child = mbox().args(["run", config.to_str().unwrap(), "--quiet"]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
        let running = Running { child: Some(child), socket, dir };
        let started = Instant::now();
        while !running.socket.exists() {
            assert!(started.elapsed() < Duration::from_secs(20), "no control socket after 20 s");
            std::thread::sleep(Duration::from_millis(20));
        }
        running
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    fn status(&self) -> serde_json::Value {
        status(&self.socket)
    }

    /// Stops mbox as Ctrl-C would and checks that it ended well.
    fn stop(mut self) {
        let mut child = self.child.take().unwrap();
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let status = child.wait().unwrap();
        assert!(status.success(), "mbox exited with {status}");
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

#[test]
fn a_truncated_plugin_is_refused_at_start_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let cut = truncated_plugin(dir.path(), "flow-stats");
    let config = dir.path().join("run.toml");
    std::fs::write(
        &config,
        format!("[input]\ngenerator = {{ flows = 10 }}\n[[nf]]\npath = {}\nargs = {{ output = \"/dev/null\" }}\n", toml_path(&cut)),
    )
    .unwrap();
    let (out, _) = mbox_within(&["run", config.to_str().unwrap(), "--quiet"], Duration::from_secs(20));
    let err = one_line_error(&out, 1);
    assert!(err.contains(&cut.display().to_string()) && err.contains("incomplete (still being written?)"), "{err}");
}

#[test]
fn a_truncated_plugin_is_refused_on_reload_and_mbox_keeps_running() {
    let mbox = Running::start("[[nf]]\nplugin = \"flow-stats\"\nargs = { output = \"/dev/null\" }\n", "");
    let libs = tempfile::tempdir().unwrap();
    let cut = truncated_plugin(libs.path(), "flow-stats");
    let out = mboxctl(&mbox.socket, &["reload", "flow-stats", "--path", cut.to_str().unwrap()]);
    let err = one_line_error(&out, 1);
    assert!(err.contains("incomplete (still being written?)") && err.contains("the running instance is unchanged"), "{err}");
    assert!(err.contains(&cut.display().to_string()) && !err.contains(".mbox-reload-"), "names the file given: {err}");
    // Still running and answering, its socket in place, and no copy left beside the library.
    let status = mbox.status();
    assert_eq!((&status["pid"], &status["nfs"][0]["state"]), (&serde_json::json!(mbox.pid()), &serde_json::json!("running")));
    assert!(mbox.socket.exists());
    let left: Vec<_> = std::fs::read_dir(libs.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(left, [cut.file_name().unwrap()], "the reload's copy is removed");
    // A whole build still reloads.
    let out = mboxctl(&mbox.socket, &["reload", "flow-stats"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let _ = &mbox.dir;
    mbox.stop();
}

#[test]
fn a_huge_generator_concurrency_is_refused_in_one_line_by_gen_and_run() {
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("gen.pcap");
    for concurrency in ["1000001", "100000000000", &usize::MAX.to_string()] {
        let (out, took) = mbox_within(&["gen", "--concurrency", concurrency, "--out", pcap.to_str().unwrap()], Duration::from_secs(10));
        let err = one_line_error(&out, 1);
        assert!(err.contains("concurrency must be between 1 and 1000000"), "{err}");
        assert!(took < Duration::from_secs(2), "{took:?}");
        let config = dir.path().join("run.toml");
        std::fs::write(&config, format!("[input]\ngenerator = {{ flows = 10, concurrency = {concurrency} }}\n")).unwrap();
        let (out, _) = mbox_within(&["run", config.to_str().unwrap(), "--quiet"], Duration::from_secs(10));
        let err = one_line_error(&out, 1);
        assert!(err.contains("[input] generator: concurrency must be between 1 and 1000000"), "{err}");
    }
    // The largest allowed value with few flows reserves for those flows only, and runs.
    let (out, _) =
        mbox_within(&["gen", "--flows", "20", "--concurrency", "1000000", "--out", pcap.to_str().unwrap()], Duration::from_secs(20));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn an_endless_config_is_refused_after_a_mebibyte() {
    // /dev/zero, /dev/urandom, and a pipe whose writer never stops.
    for path in ["/dev/zero", "/dev/urandom"] {
        for command in ["run", "graph"] {
            let (out, took) = mbox_within(&[command, path], Duration::from_secs(10));
            let err = one_line_error(&out, 1);
            assert!(err.contains(&format!("{path}: more than 1048576 bytes: not a config")), "{err}");
            assert!(took < Duration::from_secs(2), "{took:?}");
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("endless.toml");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let writer_path = fifo.clone();
    // Writes valid TOML comments until the reader goes (a broken pipe) or 10 s pass.
    let writer = std::thread::spawn(move || {
        use std::io::Write;
        let mut pipe = std::fs::OpenOptions::new().write(true).open(writer_path).unwrap();
        let line = [b"# ".as_slice(), &[b'x'; 1000], b"\n"].concat();
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(10) && pipe.write_all(&line).is_ok() {}
    });
    let (out, took) = mbox_within(&["run", fifo.to_str().unwrap()], Duration::from_secs(10));
    let err = one_line_error(&out, 1);
    assert!(err.contains("more than 1048576 bytes: not a config"), "{err}");
    assert!(took < Duration::from_secs(3), "{took:?}");
    writer.join().unwrap();
    // A config just under the limit is still read (and judged on its content).
    let big = dir.path().join("big.toml");
    let mut text = String::from("[input]\ngenerator = { flows = 1 }\n");
    while text.len() < (1 << 20) - 1100 {
        text.push_str(&format!("# {}\n", "y".repeat(1000)));
    }
    std::fs::write(&big, text).unwrap();
    let (out, _) = mbox_within(&["run", big.to_str().unwrap(), "--quiet"], Duration::from_secs(20));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// The peak resident memory of process `pid`, in bytes (VmHWM).
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
}

#[test]
fn sizes_beyond_the_machine_are_refused_at_once_with_the_keys_to_lower() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("huge.toml");
    let output = dir.path().join("out.pcap");
    // The largest accepted values: about a TiB before the first packet.
    std::fs::write(
        &config,
        format!(
            "[input]\ngenerator = {{ flows = 10 }}\n[output]\npcap = {}\n[runtime]\nshards = 64\nevent_slots = 4194304\npacket_buffers = 4194304\n\
             [flow]\ntable_size = 67108864\n",
            toml_path(&output)
        ),
    )
    .unwrap();
    let (out, took) = mbox_within(&["run", config.to_str().unwrap()], Duration::from_secs(20));
    let err = one_line_error(&out, 1);
    assert!(took < Duration::from_millis(500), "refused after {took:?}");
    assert!(err.contains("[runtime] memory_limit: the run would need about") && err.contains("before its first packet"), "{err}");
    assert!(err.contains("lower [flow] table_size") && err.contains("[runtime] event_slots"), "{err}");
    assert!(err.contains("/proc/meminfo") || err.contains("cgroup"), "says where the limit comes from: {err}");
    assert!(!output.exists(), "refused before any output was created");
    // A limit of one's own refuses the defaults; "none" lifts it.
    std::fs::write(&config, "[input]\ngenerator = { flows = 10 }\n[runtime]\nmemory_limit = \"16MiB\"\n").unwrap();
    let (out, _) = mbox_within(&["run", config.to_str().unwrap()], Duration::from_secs(20));
    let err = one_line_error(&out, 1);
    assert!(err.contains("more than the limit of 16.0 MiB ([runtime] memory_limit)"), "{err}");
    std::fs::write(&config, "[input]\ngenerator = { flows = 10 }\n[runtime]\nmemory_limit = \"none\"\n").unwrap();
    let (out, _) = mbox_within(&["run", config.to_str().unwrap()], Duration::from_secs(20));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("memory    about "), "the summary says it");
}

#[test]
fn the_memory_estimate_is_close_to_the_measured_peak() {
    // A moderate config whose preallocation dominates what mbox itself needs: 64 Ki packet
    // buffers and two flow tables of 256 Ki flows, about 270 MiB.
    let dir = tempfile::tempdir().unwrap();
    let (config, socket, report) = (dir.path().join("run.toml"), dir.path().join("mbox.sock"), dir.path().join("report.json"));
    std::fs::write(
        &config,
        format!(
            "plugin_dir = {}\n[input]\ngenerator = {{ flows = 50000000, concurrency = 2000 }}\n[runtime]\nshards = 2\npacket_buffers = 65536\n\
             [flow]\ntable_size = 262144\n[control]\nsocket = {}\n[[nf]]\nplugin = \"flow-stats\"\nargs = {{ output = \"/dev/null\" }}\n",
            toml_path(&plugin_dir()),
            toml_path(&socket)
        ),
    )
    .unwrap();
    let mut child = mbox()
        .args(["run", config.to_str().unwrap(), "--quiet", "--report", report.to_str().unwrap()])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let guard = KillOnFailure(child.id() as i32);
    let started = Instant::now();
    while !socket.exists() {
        assert!(started.elapsed() < Duration::from_secs(20), "no control socket after 20 s");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Let traffic flow through every part for a while.
    while status(&socket)["packets"].as_u64() < Some(100_000) {
        assert!(started.elapsed() < Duration::from_secs(60), "too slow");
        std::thread::sleep(Duration::from_millis(50));
    }
    let peak = peak_rss(child.id());
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert!(child.wait().unwrap().success());
    guard.disarm();
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let estimate = report["memory"]["preallocated_bytes"].as_u64().unwrap();
    assert!(report["memory"]["limit_bytes"].as_u64() > Some(estimate), "{}", report["memory"]);
    assert!((250 << 20..300 << 20).contains(&estimate), "{}", report["memory"]);
    // The process's own code, stacks and the NF's state come on top (some tens of MiB).
    assert!(peak * 4 >= estimate * 3 && peak <= estimate * 3 / 2 + (64 << 20), "estimate {estimate} B, peak {peak} B");
}

/// Runs `mbox run` on `toml` (written to DIR/run.toml, plugin_dir filled in).
fn run_config(dir: &Path, toml: &str, extra: &[&str]) -> Output {
    let config = dir.join("run.toml");
    std::fs::write(&config, format!("plugin_dir = {}\n{toml}", toml_path(&plugin_dir()))).unwrap();
    let mut args = vec!["run", config.to_str().unwrap(), "--quiet"];
    args.extend_from_slice(extra);
    mbox_within(&args, Duration::from_secs(60)).0
}

#[test]
fn an_output_naming_an_input_or_another_output_is_refused_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.pcap");
    std::fs::copy(pcaps().join("ndpi__http_ipv6.pcap"), &input).unwrap();
    let original = std::fs::read(&input).unwrap();
    let alias = dir.path().join("alias.pcap");
    std::os::unix::fs::symlink(&input, &alias).unwrap();
    let (flows, other) = (dir.path().join("out/flows.jsonl"), dir.path().join("out/sub/../flows.jsonl"));
    let nf = |plugin: &str, output: &Path| {
        format!("[[nf]]\nname = \"{plugin}\"\nplugin = \"{plugin}\"\nargs = {{ output = {} }}\n", toml_path(output))
    };
    let cases = [
        // The forwarded packets written over the capture being read, by its name or another.
        (format!("[input]\npcap = {}\n[output]\npcap = {}\n", toml_path(&input), toml_path(&input)), "[output] pcap"),
        (format!("[input]\npcap = {}\n[output]\npcap = {}\n", toml_path(&input), toml_path(&alias)), "[output] pcap"),
        // An NF's declared output over the capture.
        (format!("[input]\npcap = {}\n{}", toml_path(&input), nf("flow-stats", &alias)), "[[nf]] #1 (flow-stats) args.output"),
    ];
    for (toml, writer) in &cases {
        let err = one_line_error(&run_config(dir.path(), toml, &[]), 1);
        assert!(
            err.contains(&format!("{writer} (")) && err.contains("is also [input] pcap") && err.contains("would destroy the input"),
            "{err}"
        );
        assert_eq!(std::fs::read(&input).unwrap(), original, "the input is intact");
    }
    // Two NFs writing one file (not yet there, named two ways), and an NF writing the report.
    let toml = format!("[input]\npcap = {}\n{}{}", toml_path(&input), nf("flow-stats", &flows), nf("logger", &other));
    let err = one_line_error(&run_config(dir.path(), &toml, &[]), 1);
    assert!(err.contains("[[nf]] #1 (flow-stats) args.output") && err.contains("[[nf]] #2 (logger) args.output"), "{err}");
    assert!(err.contains("are the same file"), "{err}");
    assert!(!flows.exists(), "refused before any output was created");
    let toml = format!("[input]\npcap = {}\n{}", toml_path(&input), nf("flow-stats", &flows));
    let err = one_line_error(&run_config(dir.path(), &toml, &["--report", flows.to_str().unwrap()]), 1);
    assert!(err.contains("--report") && err.contains("are the same file"), "{err}");
    // Devices may be shared; the same NFs with files of their own run.
    let toml = format!(
        "[input]\npcap = {}\n{}{}",
        toml_path(&input),
        nf("flow-stats", Path::new("/dev/null")),
        nf("logger", Path::new("/dev/null"))
    );
    assert!(run_config(dir.path(), &toml, &[]).status.success());
    let toml = format!(
        "[input]\npcap = {}\n{}{}",
        toml_path(&input),
        nf("flow-stats", &flows),
        nf("logger", &dir.path().join("out/events.jsonl"))
    );
    let out = run_config(dir.path(), &toml, &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // mbox merge refuses to write over a capture it merges.
    let (out, _) = mbox_within(&["merge", input.to_str().unwrap(), "--out", alias.to_str().unwrap()], Duration::from_secs(20));
    let err = one_line_error(&out, 1);
    assert!(err.contains("would destroy the input"), "{err}");
    assert_eq!(std::fs::read(&input).unwrap(), original);
}

#[test]
fn lost_output_exits_with_its_own_status() {
    let dir = tempfile::tempdir().unwrap();
    let input = format!("[input]\npcap = {}\n", toml_path(&pcaps().join("ndpi__http_ipv6.pcap")));
    // /dev/full takes the open and refuses every write.
    for toml in [
        format!("{input}[[nf]]\nplugin = \"flow-stats\"\nargs = {{ output = \"/dev/full\" }}\n"),
        format!("{input}[output]\npcap = \"/dev/full\"\n"),
    ] {
        let out = run_config(dir.path(), &toml, &[]);
        assert_eq!(out.status.code(), Some(4), "{}", String::from_utf8_lossy(&out.stderr));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("mbox: output lost: ") && stderr.contains("No space left on device"), "{stderr}");
        assert!(String::from_utf8_lossy(&out.stdout).contains("packets   193 forwarded"), "the summary is still printed");
    }
    // A report that cannot be written is lost output too; a good run is 0.
    let out = run_config(dir.path(), &input, &["--report", "/dev/full"]);
    assert_eq!(out.status.code(), Some(4));
    assert_eq!(run_config(dir.path(), &input, &["--report", dir.path().join("r.json").to_str().unwrap()]).status.code(), Some(0));
}

#[test]
fn an_error_names_its_cause_once() {
    let dir = tempfile::tempdir().unwrap();
    let (out, _) = mbox_within(&["run", dir.path().join("missing.toml").to_str().unwrap()], Duration::from_secs(10));
    let err = one_line_error(&out, 1);
    assert_eq!(err.matches("No such file or directory").count(), 1, "{err}");
    let toml = "[input]\ngenerator = { flows = 1 }\n[[nf]]\nplugin = \"logger\"\nsubscribe = [\"FLOW/TPC\"]\n";
    let err = one_line_error(&run_config(dir.path(), toml, &[]), 1);
    assert_eq!(err.matches("unknown event type").count(), 1, "{err}");
}

/// GET `url` (http://HOST/PATH) with a 5 s timeout; returns the status line.
fn scrape(url: &str) -> String {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_once('/').unwrap();
    let mut stream = std::net::TcpStream::connect(host).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(stream, "GET /{path} HTTP/1.1\r\nHost: {host}\r\n\r\n").unwrap();
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response.lines().next().unwrap_or("").to_string()
}

#[test]
fn idle_and_slow_clients_do_not_starve_the_control_socket_or_the_metrics() {
    let mbox = Running::start("[[nf]]\nplugin = \"flow-stats\"\nargs = { output = \"/dev/null\" }\n", "metrics = \"127.0.0.1:0\"");
    let url = mbox.status()["metrics"].as_str().unwrap().to_string();
    let addr = url.strip_prefix("http://").unwrap().split_once('/').unwrap().0.to_string();
    // 200 idle connections to each, held open.
    let idle_unix: Vec<_> = (0..200).map(|_| std::os::unix::net::UnixStream::connect(&mbox.socket).unwrap()).collect();
    let idle_tcp: Vec<_> = (0..200).map(|_| std::net::TcpStream::connect(&addr).unwrap()).collect();
    let started = Instant::now();
    assert_eq!(mbox.status()["pid"], serde_json::json!(mbox.pid()));
    let out = mboxctl(&mbox.socket, &["stats"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(scrape(&url), "HTTP/1.1 200 OK");
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
    drop((idle_unix, idle_tcp));

    // Slowloris on the metrics: 60 clients trickling a head that never ends, a byte each
    // 100 ms, for 3 s; and 20 new idle connections a second to the control socket.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let attackers: Vec<_> = (0..3)
        .map(|kind| {
            let (addr, socket, stop) = (addr.clone(), mbox.socket.clone(), stop.clone());
            std::thread::spawn(move || {
                use std::io::Write;
                let mut slow: Vec<std::net::TcpStream> = Vec::new();
                let mut idle = Vec::new();
                let started = Instant::now();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) && started.elapsed() < Duration::from_secs(10) {
                    if kind < 2 {
                        while slow.len() < 30 {
                            let mut s = std::net::TcpStream::connect(&addr).unwrap();
                            let _ = s.write_all(b"GET /metrics HTTP/1.1\r\n");
                            slow.push(s);
                        }
                        // A connection mbox closed is replaced by a new one.
                        slow.retain_mut(|s| s.write_all(b"X").is_ok());
                    } else {
                        idle.push(std::os::unix::net::UnixStream::connect(&socket).unwrap());
                        idle.push(std::os::unix::net::UnixStream::connect(&socket).unwrap());
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(3) {
        let asked = Instant::now();
        assert_eq!(scrape(&url), "HTTP/1.1 200 OK", "a legitimate scrape during slowloris");
        assert_eq!(mbox.status()["pid"], serde_json::json!(mbox.pid()));
        assert!(asked.elapsed() < Duration::from_secs(2), "{:?}", asked.elapsed());
        std::thread::sleep(Duration::from_millis(200));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for a in attackers {
        a.join().unwrap();
    }
    mbox.stop();
}

/// A rule file that takes sig-match seconds to load in a debug build: 50,000 rules, each with
/// a content and a pcre of its own.
fn slow_rules(dir: &Path) -> PathBuf {
    let path = dir.join("many.rules");
    let mut text = String::new();
    for i in 0..50_000 {
        text.push_str(&format!(
            "alert http any any -> any any (msg:\"generated {i}\"; flow:established,to_server; content:\"/path{i}/x\"; http_uri; \
             pcre:\"/\\/path{i}\\/[a-z]+[0-9]{{2,5}}(foo|bar)/U\"; sid:{}; rev:1;)\n",
            1_000_000 + i
        ));
    }
    std::fs::write(&path, text).unwrap();
    path
}

/// A run of the generator (endless for a test) into flow-stats, its files in `dir`: (config,
/// report, flows). Closed connections linger 100 ms, not 10 s, so that flow records come at
/// once (under a loaded machine the first ones took over the 30 s `grows_past` waits).
fn endless_run(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let (config, report, flows) = (dir.join("run.toml"), dir.join("report.json"), dir.join("flows.jsonl"));
    std::fs::write(
        &config,
        format!(
            "plugin_dir = {}\n[input]\ngenerator = {{ flows = 100000000 }}\n[flow]\ntcp_closed_timeout = \"100ms\"\n\
             [[nf]]\nplugin = \"flow-stats\"\nargs = {{ output = {} }}\n",
            toml_path(&plugin_dir()),
            toml_path(&flows)
        ),
    )
    .unwrap();
    (config, report, flows)
}

/// Kills a child process when a test fails before it waited for it (an endless run left
/// behind kept a CPU busy for the rest of the suite); `disarm` once it has been waited for.
struct KillOnFailure(i32);

impl KillOnFailure {
    fn disarm(self) {
        std::mem::forget(self);
    }
}

impl Drop for KillOnFailure {
    fn drop(&mut self) {
        unsafe { libc::kill(self.0, libc::SIGKILL) };
    }
}

/// Waits until `path` has more than `len` bytes.
fn grows_past(path: &Path, len: u64) {
    let started = Instant::now();
    while std::fs::metadata(path).map_or(0, |m| m.len()) <= len {
        assert!(started.elapsed() < Duration::from_secs(30), "{} did not grow past {len} bytes in 30 s", path.display());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Under a service manager (stderr not a terminal) SIGHUP is log rotation: the run goes on and
/// flow-stats reopens its output, so the rotated file keeps what was written before and a new
/// one at the same path gets what comes after; SIGTERM then ends the run with its summary.
#[test]
fn sighup_reopens_the_outputs_of_a_run_without_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let (config, report, flows) = endless_run(dir.path());
    let child = mbox()
        .args(["run", config.to_str().unwrap(), "--quiet", "--report", report.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let guard = KillOnFailure(child.id() as i32);
    grows_past(&flows, 0);
    let rotated = dir.path().join("flows.jsonl.1");
    std::fs::rename(&flows, &rotated).unwrap();
    unsafe { libc::kill(child.id() as i32, libc::SIGHUP) };
    grows_past(&flows, 0);
    let before = std::fs::metadata(&rotated).unwrap().len();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(std::fs::metadata(&rotated).unwrap().len(), before, "nothing more goes to the rotated file");
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let out = child.wait_with_output().unwrap();
    guard.disarm();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("packets"), "the summary: {out:?}");
    // Whole lines on both sides of the rotation: every line of both files is a flow record.
    for path in [&rotated, &flows] {
        let text = std::fs::read_to_string(path).unwrap();
        assert!(text.ends_with('\n'), "{} ends mid-line", path.display());
        for line in text.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{}: {e}: {line}", path.display()));
            assert!(v["proto"].is_string(), "{line}");
        }
    }
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert!(report["input"]["packets"].as_u64() > Some(0), "{report}");
}

/// From a terminal SIGHUP is the terminal going away: the run ends as SIGTERM ends it (NFs
/// finish, the summary and the report are written, the status is the run's), not a kill that
/// loses them, nor a run left writing to a terminal that is gone. The terminal: `script`'s pty.
#[test]
fn sighup_from_a_terminal_stops_a_run_with_its_summary() {
    let dir = tempfile::tempdir().unwrap();
    let (config, report, flows) = endless_run(dir.path());
    let pid_file = dir.path().join("mbox.pid");
    let command = format!(
        "echo $$ > {}; exec {} run {} --quiet --report {}",
        pid_file.display(),
        env!("CARGO_BIN_EXE_mbox"),
        config.display(),
        report.display()
    );
    let child = Command::new("script").args(["-qec", &command, "/dev/null"]).stdout(Stdio::piped()).stdin(Stdio::null()).spawn().unwrap();
    // Killing `script` closes the terminal: mbox gets its SIGHUP and ends.
    let guard = KillOnFailure(child.id() as i32);
    grows_past(&flows, 0);
    let pid: i32 = std::fs::read_to_string(&pid_file).unwrap().trim().parse().unwrap();
    unsafe { libc::kill(pid, libc::SIGHUP) };
    let out = child.wait_with_output().unwrap();
    guard.disarm();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("packets"), "the summary: {out:?}");
    let report: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert!(report["input"]["packets"].as_u64() > Some(0), "{report}");
}

#[test]
fn a_signal_during_start_up_stops_mbox_at_once_without_leaving_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let rules = slow_rules(dir.path());
    for (signal, code) in [(libc::SIGTERM, 143), (libc::SIGINT, 130)] {
        let (pcap, flows, report) = (dir.path().join("out.pcap"), dir.path().join("flows.jsonl"), dir.path().join("report.json"));
        // A report from an earlier run: start-up does not touch it, so it stays.
        std::fs::write(&report, "{\"earlier\": true}").unwrap();
        let config = dir.path().join("run.toml");
        std::fs::write(
            &config,
            format!(
                "plugin_dir = {}\n[input]\ngenerator = {{ flows = 100000000 }}\n[output]\npcap = {}\n\
                 [[nf]]\nplugin = \"flow-stats\"\nargs = {{ output = {} }}\n[[nf]]\nplugin = \"sig-match\"\nargs = {{ rules = {} }}\n",
                toml_path(&plugin_dir()),
                toml_path(&pcap),
                toml_path(&flows),
                toml_path(&rules)
            ),
        )
        .unwrap();
        let mut child = mbox()
            .args(["run", config.to_str().unwrap(), "--quiet", "--report", report.to_str().unwrap()])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let guard = KillOnFailure(child.id() as i32);
        // The outputs exist once start-up has opened them; sig-match then loads its rules.
        let started = Instant::now();
        while !(pcap.exists() && flows.exists()) {
            assert!(started.elapsed() < Duration::from_secs(20), "start-up never opened its outputs");
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(Duration::from_millis(100));
        assert!(child.try_wait().unwrap().is_none(), "still starting");
        unsafe { libc::kill(child.id() as i32, signal) };
        let signalled = Instant::now();
        while child.try_wait().unwrap().is_none() {
            if signalled.elapsed() > Duration::from_secs(2) {
                child.kill().unwrap();
                panic!("signal {signal} during start-up ignored for 2 s");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let out = child.wait_with_output().unwrap();
        guard.disarm();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{stderr}");
        assert!(stderr.contains("stopped by SIG") && stderr.contains("during start-up"), "{stderr}");
        assert!(out.stdout.is_empty(), "no summary claims a run");
        assert!(!pcap.exists() && !flows.exists(), "the outputs start-up had begun are removed");
        assert_eq!(std::fs::read_to_string(&report).unwrap(), "{\"earlier\": true}");
    }
}
