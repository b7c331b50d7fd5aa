"""Running the `bastion` binary from the interop tests."""
import os
import subprocess

BIN = os.environ.get("BASTION_BIN", "bastion")


def run(home, *args, env=None, ok=True):
    """`bastion --home HOME ARGS…`; fails the test on a non-zero exit unless `ok` is False."""
    p = subprocess.run([BIN, "--home", home, *args], capture_output=True, text=True, timeout=600,
                       env=None if env is None else dict(os.environ, **env))
    if ok and p.returncode != 0:
        raise AssertionError(f"bastion {args} exited {p.returncode}: {p.stderr}")
    return p
