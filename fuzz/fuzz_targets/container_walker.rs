//! Any bytes through format detection and the container walker (zip, tar, compressed
//! streams, npy, safetensors, GGUF, HDF5, ONNX, …) with small limits, so a bomb is an
//! error quickly rather than a slow run.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut scanner = bastion_scan::Scanner::new(bastion_scan::Policy::builtin());
    scanner.limits.max_expanded = 16 << 20;
    scanner.limits.max_nested_archive = 4 << 20;
    let _ = scanner.scan_bytes(data, "fuzz");
});
