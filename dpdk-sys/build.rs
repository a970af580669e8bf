//! Builds the bindings and the shim against the system DPDK, with the compiler flags
//! `pkg-config --cflags libdpdk` prints (raw: the headers need its `-include rte_config.h` and
//! `-march`, which the pkg-config crate would drop).

use std::path::PathBuf;
use std::process::Command;

fn pkg_config(arg: &str) -> Vec<String> {
    let out = Command::new("pkg-config")
        .args([arg, "libdpdk"])
        .output()
        .unwrap_or_else(|e| panic!("dpdk-sys needs pkg-config and the system DPDK (apt-get install dpdk-dev libdpdk-dev pkg-config): {e}"));
    assert!(
        out.status.success(),
        "pkg-config found no libdpdk: install DPDK 22.11 (apt-get install dpdk-dev libdpdk-dev), or build mbox without the `dpdk` feature\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).split_whitespace().map(str::to_string).collect()
}

fn main() {
    if std::env::var_os("CARGO_FEATURE_BIND").is_none() {
        return; // without the `bind` feature the crate is empty and needs no DPDK
    }
    println!("cargo:rerun-if-changed=wrapper.h");
    println!("cargo:rerun-if-changed=shim.c");
    let cflags = pkg_config("--cflags");

    let mut shim = cc::Build::new();
    shim.file("shim.c").include(".").warnings(false);
    for flag in &cflags {
        shim.flag(flag);
    }
    shim.compile("mbox_dpdk_shim");

    let bindings = bindgen::Builder::default()
        .header("wrapper.h")
        .clang_args(&cflags)
        .allowlist_function(
            "rte_eal_.*|rte_eth_.*|rte_mempool_.*|rte_pktmbuf_pool_create|rte_lcore_.*|rte_socket_id|rte_strerror|rte_version|mbox_rte_.*",
        )
        .allowlist_type("rte_eth_conf|rte_eth_dev_info|rte_eth_stats|rte_ether_addr|rte_eth_rxconf|rte_eth_txconf|rte_mbuf|rte_mempool")
        .allowlist_var("RTE_ETH_.*|RTE_MBUF_DEFAULT_.*|RTE_PKTMBUF_HEADROOM|RTE_MAX_ETHPORTS")
        .derive_default(true)
        .layout_tests(false)
        .generate_comments(false)
        .generate()
        .expect("bindgen could not generate the DPDK bindings");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    bindings.write_to_file(out.join("bindings.rs")).expect("write bindings");

    // Shared linking, Debian's default: EAL then loads every PMD from the system plugin
    // directory by itself.
    for flag in pkg_config("--libs") {
        if let Some(dir) = flag.strip_prefix("-L") {
            println!("cargo:rustc-link-search=native={dir}");
        } else if let Some(lib) = flag.strip_prefix("-l") {
            println!("cargo:rustc-link-lib={lib}");
        }
    }
}
