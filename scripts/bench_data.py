"""Profile and drift: Bastion beside pandas + SciPy and Evidently on the same Parquet data.

Generates a reference and a drifted current dataset (20 mixed columns), then times:
  - Bastion: `bastion data profile` and `bastion data diff` (each a fresh process that reads
    the version's stored Parquet, checks its digest and records the result as evidence);
  - pandas + SciPy: read the Parquet, a profile of the same statistics (count, nulls,
    distinct, min/max/mean/std, quantiles, histogram, top-k) and per-column KS / chi-square
    drift tests;
  - Evidently (pinned): read the Parquet with pandas, DataSummaryPreset + DataDriftPreset.
Then profiles the large dataset with Bastion alone under /usr/bin/time for peak RSS.
Prints a Markdown table (see docs/benchmarks.md).
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

CITIES = np.array([f"city_{i:03d}" for i in range(200)])
PLANS = np.array(["free", "basic", "pro", "team", "enterprise"])


def make_chunk(rng, n, shift, start):
    cols = {}
    for j in range(6):
        x = rng.normal(50 + 3 * j + shift * (j == 0), 10 + j, n)
        if j % 3 == 0:
            mask = rng.random(n) < 0.02
            x = np.where(mask, np.nan, x)
        cols[f"num_{j}"] = x
    cols["amount"] = rng.lognormal(3 + 0.1 * shift, 1.0, n)
    cols["ratio"] = rng.uniform(0, 1, n)
    for j in range(4):
        cols[f"int_{j}"] = rng.integers(0, 10 ** (j + 1), n) + int(shift * j)
    p = np.array([0.5, 0.2, 0.15, 0.1, 0.05])
    if shift:
        p = np.array([0.3, 0.3, 0.2, 0.1, 0.1])
    cols["plan"] = PLANS[rng.choice(5, n, p=p)]
    cols["city"] = CITIES[rng.integers(0, 200, n)]
    cols["country"] = np.array(["fr", "de", "no", "es", "it", "pl", "se", "nl"])[rng.integers(0, 8, n)]
    cols["user"] = np.char.add("u", (np.arange(start, start + n) % 5_000_000).astype(str))
    cols["active"] = rng.random(n) < 0.7
    cols["churned"] = rng.random(n) < (0.1 + 0.05 * shift)
    return pa.table(cols)


def generate(path, rows, shift, seed, chunk=1_000_000):
    rng = np.random.default_rng(seed)
    writer = None
    done = 0
    while done < rows:
        n = min(chunk, rows - done)
        t = make_chunk(rng, n, shift, done)
        if writer is None:
            writer = pq.ParquetWriter(path, t.schema, compression="snappy")
        writer.write_table(t, row_group_size=131072)
        done += n
    writer.close()


def timed(cmd, env=None):
    """Runs cmd under /usr/bin/time; returns (seconds, peak RSS in MB, stdout)."""
    with tempfile.NamedTemporaryFile("r") as tf:
        t0 = time.perf_counter()
        out = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", tf.name] + cmd,
                             capture_output=True, text=True, env=env)
        dt = time.perf_counter() - t0
        if out.returncode not in (0,):
            sys.exit(f"{cmd} failed: {out.stderr[-2000:]}")
        rss_kb = int(tf.read().strip().splitlines()[-1])
    return dt, rss_kb / 1024, out.stdout


def pandas_profile(df):
    out = {}
    for c in df.columns:
        s = df[c]
        d = {"count": int(s.count()), "nulls": int(s.isna().sum()), "distinct": int(s.nunique())}
        if s.dtype.kind in "fiu":
            v = s.dropna().to_numpy(dtype=float)
            d.update(min=float(v.min()), max=float(v.max()), mean=float(v.mean()), std=float(v.std(ddof=1)))
            d["quantiles"] = np.quantile(v, [0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99]).tolist()
            d["histogram"] = np.histogram(v, bins=20)[0].tolist()
        else:
            d["top"] = s.value_counts().head(20).to_dict()
        out[c] = d
    return out


def pandas_drift(ref, cur):
    from scipy import stats
    out = {}
    for c in ref.columns:
        a, b = ref[c].dropna(), cur[c].dropna()
        if a.dtype.kind in "fiu" and a.dtype != bool:
            r = stats.ks_2samp(a.to_numpy(dtype=float), b.to_numpy(dtype=float))
            out[c] = float(r.pvalue)
        else:
            ca, cb = a.astype(str).value_counts(), b.astype(str).value_counts()
            keys = sorted(set(ca.index) | set(cb.index))
            table = np.array([[ca.get(k, 0) for k in keys], [cb.get(k, 0) for k in keys]])
            out[c] = float(stats.chi2_contingency(table, correction=False)[1])
    return out


def run_pandas(ref_path, cur_path):
    import pandas as pd
    t0 = time.perf_counter()
    ref = pd.read_parquet(ref_path)
    t_read = time.perf_counter() - t0
    t1 = time.perf_counter()
    pandas_profile(ref)
    t_profile = time.perf_counter() - t1
    cur = pd.read_parquet(cur_path)
    t2 = time.perf_counter()
    pandas_drift(ref, cur)
    t_drift = time.perf_counter() - t2
    return t_read, t_profile, t_drift


def run_evidently(ref_path, cur_path):
    import pandas as pd
    from evidently import Report
    from evidently.presets import DataDriftPreset, DataSummaryPreset
    t0 = time.perf_counter()
    ref = pd.read_parquet(ref_path)
    cur = pd.read_parquet(cur_path)
    t_read = time.perf_counter() - t0
    t1 = time.perf_counter()
    Report([DataSummaryPreset()]).run(current_data=ref, reference_data=None)
    t_profile = time.perf_counter() - t1
    t2 = time.perf_counter()
    Report([DataDriftPreset()]).run(current_data=cur, reference_data=ref)
    t_drift = time.perf_counter() - t2
    return t_read, t_profile, t_drift


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bastion", required=True)
    ap.add_argument("--rows", type=int, default=1_000_000, help="rows of the compared datasets")
    ap.add_argument("--large-rows", type=int, default=10_000_000)
    ap.add_argument("--work", default=None, help="keep the generated data here")
    ap.add_argument("--skip-evidently", action="store_true")
    args = ap.parse_args()

    work = args.work or tempfile.mkdtemp(prefix="bench-data-")
    os.makedirs(work, exist_ok=True)
    ref, cur, big = (os.path.join(work, f) for f in ("ref.parquet", "cur.parquet", "large.parquet"))
    for path, rows, shift, seed in ((ref, args.rows, 0.0, 1), (cur, args.rows, 1.0, 2), (big, args.large_rows, 0.0, 3)):
        if not os.path.exists(path) or pq.ParquetFile(path).metadata.num_rows != rows:
            t = time.perf_counter()
            generate(path, rows, shift, seed)
            print(f"generated {path}: {rows:,} rows in {time.perf_counter() - t:.1f} s", file=sys.stderr)

    home = tempfile.mkdtemp(prefix="bench-data-home-")
    env = dict(os.environ, BASTION_HOME=home, RUST_LOG="warn")
    env.pop("BASTION_BACKEND_STORE_URI", None)
    b = [args.bastion]
    ingest = {}
    for name, path in (("ref", ref), ("cur", cur), ("large", big)):
        dt, _, _ = timed(b + ["data", "add", path, "--name", name], env)
        ingest[name] = dt
    t_bp, rss_bp, _ = timed(b + ["data", "profile", "ref", "-o", os.path.join(work, "profile.json")], env)
    t_bd, rss_bd, _ = timed(b + ["data", "diff", "ref", "cur", "-o", os.path.join(work, "diff.json")], env)
    t_big, rss_big, _ = timed(b + ["data", "profile", "large", "-o", os.path.join(work, "large-profile.json")], env)

    p_read, p_prof, p_drift = run_pandas(ref, cur)
    rows = []
    rows.append(("profile, 1 dataset", p_read + p_prof, t_bp))
    rows.append(("drift, reference vs current", p_drift + p_read, t_bd))
    e = None
    if not args.skip_evidently:
        e = run_evidently(ref, cur)

    n = args.rows
    print(f"\n{n:,} rows × 20 columns (reference and current), {args.large_rows:,} rows for the large profile\n")
    print("| measure | pandas + SciPy | Evidently | Bastion | vs pandas+SciPy | vs Evidently |")
    print("|---|---:|---:|---:|---:|---:|")
    ev_prof = (e[0] / 2 + e[1]) if e else None
    ev_drift = (e[0] + e[2]) if e else None
    pairs = [
        ("profile", p_read + p_prof, ev_prof, t_bp),
        ("drift (reference vs current)", p_read * 2 + p_drift, ev_drift, t_bd),
        ("profile + drift", p_read * 2 + p_prof + p_drift, (e[0] + e[1] + e[2]) if e else None, t_bp + t_bd),
    ]
    for label, p, ev, bt in pairs:
        evs = f"{ev:.2f} s" if ev is not None else "—"
        evr = f"**{ev / bt:.1f}×**" if ev is not None else "—"
        print(f"| {label} | {p:.2f} s | {evs} | {bt:.2f} s | {p / bt:.1f}× | {evr} |")
    print()
    print(f"Bastion ingest (CSV/Parquet → canonical Parquet, digest, store): ref {ingest['ref']:.2f} s, "
          f"cur {ingest['cur']:.2f} s, large {ingest['large']:.2f} s")
    print(f"Bastion peak RSS: profile {rss_bp:.0f} MB, diff {rss_bd:.0f} MB")
    print(f"Large profile: {args.large_rows:,} rows in {t_big:.2f} s = "
          f"{args.large_rows / t_big / 1e6:.2f} M rows/s, peak RSS {rss_big:.0f} MB")
    json.dump({"pandas": [p_read, p_prof, p_drift], "evidently": e, "bastion": [t_bp, t_bd, t_big],
               "rss_mb": [rss_bp, rss_bd, rss_big], "ingest": ingest},
              open(os.path.join(work, "bench.json"), "w"))


if __name__ == "__main__":
    main()
