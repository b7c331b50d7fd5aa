"""Running the `bastion` binary from the interop tests."""
import contextlib
import os
import subprocess
import tempfile

BIN = os.environ.get("BASTION_BIN", "bastion")
DATASETS = os.path.join(os.path.dirname(__file__), "..", "..", "datasets")


def run(home, *args, env=None, ok=True):
    """`bastion --home HOME ARGS…`; fails the test on a non-zero exit unless `ok` is False."""
    p = subprocess.run([BIN, "--home", home, *args], capture_output=True, text=True, timeout=600,
                       env=None if env is None else dict(os.environ, **env))
    if ok and p.returncode != 0:
        raise AssertionError(f"bastion {args} exited {p.returncode}: {p.stderr}")
    return p


@contextlib.contextmanager
def shipped_home(env=None):
    """A throwaway home holding the shipped datasets as bc, digits and diabetes (v1)."""
    with tempfile.TemporaryDirectory() as d:
        for name, csv in [("bc", "breast_cancer.csv"), ("digits", "digits.csv"), ("diabetes", "diabetes.csv")]:
            run(d, "data", "add", os.path.join(DATASETS, csv), "--name", name, env=env)
        yield d


def load_csv(name, target):
    """A shipped dataset as (feature names, float matrix, target values as text)."""
    import numpy as np

    with open(os.path.join(DATASETS, name)) as f:
        header = f.readline().strip().split(",")
        rows = [line.strip().split(",") for line in f if line.strip()]
    t = header.index(target)
    features = [h for i, h in enumerate(header) if i != t]
    x = np.array([[float(v) for i, v in enumerate(r) if i != t] for r in rows])
    return features, x, [r[t] for r in rows]
