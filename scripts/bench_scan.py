"""bastion scan beside modelscan and picklescan on the same files (see scripts/bench-scan).

1. The corpus from tests/corpus/generate.py: which malicious files each tool detects, which
   benign files it flags, and how long each takes over the whole corpus (best of N runs).
2. A large benign PyTorch-zip-layout checkpoint (default 2 GiB): bastion's throughput from
   the page cache and its peak memory, beside a file a tenth the size (memory must not grow
   with the file); the reference tools' times on the same file.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
GENERATOR = os.path.join(HERE, "..", "tests", "corpus", "generate.py")


def run(cmd):
    """Runs cmd, returning (seconds, peak RSS in MiB of that child, CompletedProcess)."""
    wrapper = (
        "import resource, subprocess, sys, time, json\n"
        "t = time.perf_counter()\n"
        "p = subprocess.run(sys.argv[1:], capture_output=True)\n"
        "dt = time.perf_counter() - t\n"
        "rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024\n"
        "sys.stderr.buffer.write(p.stderr)\n"
        "sys.stdout.buffer.write(p.stdout)\n"
        "print(json.dumps({'dt': dt, 'rss': rss, 'rc': p.returncode}), file=sys.stderr)\n"
    )
    p = subprocess.run([sys.executable, "-c", wrapper, *cmd], capture_output=True, text=True)
    last = p.stderr.strip().splitlines()[-1]
    m = json.loads(last)
    p.returncode = m["rc"]
    return m["dt"], m["rss"], p


def best(cmd, repeat):
    times, rss, last = [], 0.0, None
    for _ in range(repeat):
        dt, r, last = run(cmd)
        times.append(dt)
        rss = max(rss, r)
    return min(times), rss, last


def torch_zip(path, size):
    """A benign checkpoint in PyTorch's zip layout: the corpus generator's state-dict pickle
    (storages by persistent id), then the storages as stored (uncompressed) members."""
    sys.path.insert(0, os.path.dirname(GENERATOR))
    import generate

    n_storages = 8
    per = size // n_storages
    block = os.urandom(1 << 20)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED, allowZip64=True) as z:
        z.writestr("archive/data.pkl", generate.torch_state_dict_pickle(n_storages))
        z.writestr("archive/version", "3\n")
        z.writestr("archive/byteorder", "little")
        for i in range(n_storages):
            with z.open(f"archive/data/{i}", "w", force_zip64=True) as f:
                left = per
                while left > 0:
                    k = min(left, len(block))
                    f.write(block[:k])
                    left -= k


def bastion_detections(report, fail):
    out = {}
    for f in report["files"]:
        name = os.path.basename(f["path"])
        out[name] = any(x["severity"] in fail for x in f["findings"]) or bool(f["errors"])
    return out


def modelscan_detections(report_file, root):
    """Files modelscan reports an issue or an error for (its console JSON is line-wrapped,
    so the report is read from the file it writes)."""
    with open(report_file) as f:
        report = json.load(f)
    flagged = set()
    for item in report.get("issues", []) + report.get("errors", []):
        src = item.get("source") or ""
        flagged.add(src.split(":")[0].split("/")[0])
    return {n: n in flagged for n in os.listdir(root)}


def picklescan_detections(stdout, root):
    flagged = set()
    for line in stdout.splitlines():
        # "/path/file: dangerous import 'os system' FOUND" and "ERROR: parsing pickle in /path/file: ..."
        for name in os.listdir(root):
            if os.path.join(root, name) in line and ("FOUND" in line or "ERROR" in line or "dangerous" in line):
                flagged.add(name)
    return {n: n in flagged for n in os.listdir(root)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bastion", required=True)
    ap.add_argument("--modelscan", required=True)
    ap.add_argument("--picklescan", required=True)
    ap.add_argument("--size-mib", type=int, default=2048)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="bench-scan-")
    corpus = os.path.join(work, "corpus")
    subprocess.run([sys.executable, GENERATOR, corpus], check=True, capture_output=True)
    mal, ben = os.path.join(corpus, "malicious"), os.path.join(corpus, "benign")

    print(f"corpus: {len(os.listdir(mal))} malicious, {len(os.listdir(ben))} benign files")
    rows = []
    fail = {"MEDIUM", "HIGH", "CRITICAL"}
    ms_report = os.path.join(work, "modelscan.json")
    tools = {
        "bastion scan": lambda d: [args.bastion, "scan", d, "--format", "json"],
        "modelscan": lambda d: [args.modelscan, "scan", "-p", d, "-r", "json", "-o", ms_report, "-l", "ERROR"],
        "picklescan": lambda d: [args.picklescan, "-p", d],
    }
    parse = {
        "bastion scan": lambda out, d: bastion_detections(json.loads(out), fail),
        "modelscan": lambda out, d: modelscan_detections(ms_report, d),
        "picklescan": picklescan_detections,
    }
    times = {}
    for tool, cmd in tools.items():
        t_mal, _, p_mal = best(cmd(mal), args.repeat)
        det = parse[tool](p_mal.stdout, mal)
        t_ben, _, p_ben = best(cmd(ben), args.repeat)
        fp = parse[tool](p_ben.stdout, ben)
        detected = sum(det.values())
        flagged = sum(fp.values())
        times[tool] = t_mal + t_ben
        rows.append((tool, detected, len(det), flagged, len(fp), t_mal + t_ben))
        missed = sorted(n for n, v in det.items() if not v)
        noisy = sorted(n for n, v in fp.items() if v)
        print(f"  {tool}: missed {len(missed)}: {' '.join(missed[:12])}{' …' if len(missed) > 12 else ''}")
        if noisy:
            print(f"  {tool}: flagged benign: {' '.join(noisy)}")
    print()
    print(f"{'tool':<14} {'malicious detected':>20} {'benign flagged':>16} {'corpus time':>12}")
    for tool, d, nd, f, nf, t in rows:
        print(f"{tool:<14} {f'{d}/{nd}':>20} {f'{f}/{nf}':>16} {t*1000:>10.0f}ms")
    faster = min(times["modelscan"], times["picklescan"])
    print(f"bastion is {faster / times['bastion scan']:.1f}x faster than the faster reference tool on the corpus")
    print()

    big = os.path.join(work, "big.pt")
    small = os.path.join(work, "small.pt")
    torch_zip(big, args.size_mib << 20)
    torch_zip(small, (args.size_mib << 20) // 10)
    for f in (big, small):
        with open(f, "rb") as fh:  # into the page cache
            while fh.read(1 << 24):
                pass
    size = os.path.getsize(big)
    t_big, rss_big, p = best([args.bastion, "scan", big, "--format", "json"], args.repeat)
    assert p.returncode == 0, p.stdout + p.stderr
    _, rss_small, _ = best([args.bastion, "scan", small, "--format", "json"], args.repeat)
    print(f"large file: {size / 2**30:.2f} GiB PyTorch zip")
    print(f"  bastion scan   {t_big:.3f}s = {size / t_big / 1e9:.1f} GB/s, peak RSS {rss_big:.1f} MiB (a file 1/10 the size: {rss_small:.1f} MiB)")
    # The zip is opened in place and storage members are skipped once their first bytes show
    # they are raw data; in legacy PyTorch's tar layout the same bytes must be read through.
    tarred = os.path.join(work, "big.tar")
    legacy = os.path.join(work, "legacy")
    os.makedirs(legacy)
    sys.path.insert(0, os.path.dirname(GENERATOR))
    import generate
    with open(os.path.join(legacy, "pickle"), "wb") as f:
        f.write(generate.torch_state_dict_pickle(8))
    block = os.urandom(1 << 20)
    with open(os.path.join(legacy, "storages"), "wb") as f:
        for _ in range(args.size_mib):
            f.write(block)
    subprocess.run(["tar", "-cf", tarred, "-C", legacy, "pickle", "storages"], check=True)
    os.remove(os.path.join(legacy, "storages"))
    with open(tarred, "rb") as fh:
        while fh.read(1 << 24):
            pass
    t_tar, rss_tar, p = best([args.bastion, "scan", tarred, "--format", "json"], args.repeat)
    assert p.returncode == 0, p.stdout + p.stderr
    print(f"  bastion scan   {t_tar:.3f}s = {os.path.getsize(tarred) / t_tar / 1e9:.1f} GB/s as a tar stream (every byte read), peak RSS {rss_tar:.1f} MiB")
    for tool in ("modelscan", "picklescan"):
        cmd = [args.modelscan, "scan", "-p", big, "-l", "ERROR"] if tool == "modelscan" else [args.picklescan, "-p", big]
        t, rss, _ = best(cmd, 1)
        print(f"  {tool:<14} {t:.3f}s = {size / t / 1e9:.2f} GB/s, peak RSS {rss:.1f} MiB ({t / t_big:.1f}x bastion's time)")
    subprocess.run(["rm", "-rf", work])


if __name__ == "__main__":
    main()
