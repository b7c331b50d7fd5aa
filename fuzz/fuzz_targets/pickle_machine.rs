//! Any bytes through the symbolic pickle machine and the policy: it must end, within its
//! limits, without panicking, whatever the input.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let outcome = bastion_scan::pickle::scan(data);
    let policy = bastion_scan::Policy::builtin();
    let _ = bastion_scan::pickle::analyze::findings(&outcome, &policy, "fuzz");
});
