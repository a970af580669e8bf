//! Every kept seed (`seeds/TARGET/`: inputs made from the bundled captures, rules and
//! configs, what libFuzzer found worth keeping, and every input that once failed) through its
//! fuzz target, without libFuzzer: a parser that regresses on any of them fails here, with
//! no cargo-fuzz needed.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    out.sort();
    out
}

#[test]
fn every_kept_seed_passes_its_fuzz_target() {
    let started = std::time::Instant::now();
    let mut failed = Vec::new();
    let mut total = 0;
    for (name, target) in mbox_fuzz::TARGETS {
        let seeds = files(&root().join("seeds").join(name));
        assert!(!seeds.is_empty(), "no seeds for target `{name}` in seeds/{name}/");
        for path in seeds {
            let bytes = std::fs::read(&path).unwrap();
            total += 1;
            if std::panic::catch_unwind(|| target(&bytes)).is_err() {
                failed.push(format!("{name}: {}", path.display()));
            }
        }
    }
    assert!(failed.is_empty(), "{} of {total} seeds fail their target:\n{}", failed.len(), failed.join("\n"));
    eprintln!("{total} seeds through {} targets in {:.1} s", mbox_fuzz::TARGETS.len(), started.elapsed().as_secs_f64());
}

#[test]
fn the_seed_folders_and_the_libfuzzer_binaries_name_the_same_targets() {
    let names: Vec<&str> = mbox_fuzz::TARGETS.iter().map(|(n, _)| *n).collect();
    let mut folders: Vec<String> = std::fs::read_dir(root().join("seeds"))
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    folders.sort();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(folders, sorted, "seeds/ has one folder per target");
    let manifest = std::fs::read_to_string(root().join("fuzz/Cargo.toml")).unwrap();
    for name in &names {
        assert!(manifest.contains(&format!("name = \"{name}\"")), "fuzz/Cargo.toml has no [[bin]] `{name}`");
        let wrapper = std::fs::read_to_string(root().join(format!("fuzz/fuzz_targets/{name}.rs"))).unwrap();
        assert!(wrapper.contains(&format!("::fuzz_{name}(data)")), "fuzz/fuzz_targets/{name}.rs calls another body");
    }
}
