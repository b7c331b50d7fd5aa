"""The measuring half of scripts/bench-sign: builds the model folder, times each signer and
hasher (best of --repeat runs, after a warm-up), and prints a JSON summary."""
import argparse
import base64
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time


def build(root, gib):
    """~gib GiB: one big file, a few medium, many small, some empty, nested folders."""
    total = gib << 30
    plan = [("model-00001-of-00002.safetensors", total * 40 // 100),
            ("model-00002-of-00002.safetensors", total * 25 // 100)]
    plan += [(f"layers/block{i}/weights.bin", total * 5 // 100) for i in range(5)]
    rest = total - sum(size for _, size in plan)
    plan += [(f"shards/part-{i:04d}.npy", rest // 400) for i in range(400)]
    plan += [("config.json", 700), ("tokenizer/vocab.txt", 250_000), ("empty.txt", 0), ("a-b/x", 3), ("a/x", 3), ("a.txt", 5)]
    block = hashlib.sha256(b"bench").digest() * (1 << 15)  # 1 MiB, varied per write below
    done = 0
    for rel, size in plan:
        p = os.path.join(root, rel)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "wb") as f:
            left, i = size, 0
            while left > 0:
                chunk = block[i % 31:] + block[:i % 31]
                f.write(chunk[:left])
                left -= min(left, len(chunk))
                i += 1
        done += size
    return len(plan), done


def timed(cmd, repeat, env=None):
    best = None
    for _ in range(repeat):
        t = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, shell=isinstance(cmd, str))
        d = time.perf_counter() - t
        best = d if best is None else min(best, d)
    return best


def root_of(sig):
    bundle = json.load(open(sig))
    return json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))["subject"][0]["digest"]["sha256"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bastion", required=True)
    ap.add_argument("--model-signing", required=True)
    ap.add_argument("--gib", type=int, default=4)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--dir", default=None)
    a = ap.parse_args()
    work = a.dir or tempfile.mkdtemp(prefix="bastion-bench-sign-")
    model = os.path.join(work, "model")
    if not os.path.isdir(model):
        files, size = build(model, a.gib)
    else:
        files = sum(len(f) for _, _, f in os.walk(model))
        size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(model) for f in fs)
    key, pub = os.path.join(work, "key.pem"), os.path.join(work, "pub.pem")
    subprocess.run(["openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", key], check=True)
    subprocess.run(["openssl", "ec", "-in", key, "-pubout", "-out", pub], check=True, stderr=subprocess.DEVNULL)
    ours, theirs = os.path.join(work, "bastion.sig"), os.path.join(work, "reference.sig")
    listing = os.path.join(work, "files.txt")
    with open(listing, "w") as f:
        for d, _, fs in os.walk(model):
            for name in fs:
                f.write(os.path.join(d, name) + "\0")
    # Warm the page cache so every tool reads from memory.
    subprocess.run(f"xargs -0 cat < {listing} > /dev/null", shell=True, check=True)
    results = {
        "files": files,
        "bytes": size,
        "bastion_sign_s": timed([a.bastion, "sign", model, "--key", key, "--signature", ours], a.repeat),
        "model_signing_sign_s": timed([a.model_signing, "sign", "key", model, "--private_key", key, "--signature", theirs], a.repeat),
        "sha256sum_parallel_s": timed(f"xargs -0 -P2 -n8 sha256sum < {listing}", a.repeat),
        "openssl_parallel_s": timed(f"xargs -0 -P2 -n8 openssl dgst -sha256 < {listing}", a.repeat),
        "bastion_verify_s": timed([a.bastion, "verify", model, "--signature", ours, "--key", pub], a.repeat),
    }
    # The machine's ceiling: OpenSSL's SHA-256 on every core at once, from memory.
    speed = subprocess.run(["openssl", "speed", "-seconds", "2", "-bytes", "1048576", "-multi", str(os.cpu_count()), "-evp", "sha256"],
                           capture_output=True, text=True).stdout
    line = [l for l in speed.splitlines() if l.startswith("sha256")]
    results["sha256_ceiling_gb_per_s"] = round(float(line[-1].split()[-1].rstrip("k")) * 1000 / 1e9, 3) if line else None
    same = root_of(ours) == root_of(theirs)
    r = results
    r["same_root_digest"] = same
    for k in ("bastion_sign", "model_signing_sign", "sha256sum_parallel", "openssl_parallel", "bastion_verify"):
        r[k + "_gb_per_s"] = round(size / r[k + "_s"] / 1e9, 3)
    r["speedup_vs_model_signing"] = round(r["model_signing_sign_s"] / r["bastion_sign_s"], 2)
    r["throughput_vs_sha256sum"] = round(r["sha256sum_parallel_s"] / r["bastion_sign_s"], 2)
    r["throughput_vs_openssl"] = round(r["openssl_parallel_s"] / r["bastion_sign_s"], 2)
    if r["sha256_ceiling_gb_per_s"]:
        r["fraction_of_ceiling"] = round(r["bastion_sign_gb_per_s"] / r["sha256_ceiling_gb_per_s"], 2)
    print(json.dumps(r, indent=2))
    if not a.dir:
        shutil.rmtree(work, ignore_errors=True)
    if not same:
        raise SystemExit("root digests differ")


if __name__ == "__main__":
    main()
