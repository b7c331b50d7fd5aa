"""Bastion's red team beside ART on the same MLP weights and rows (run by scripts/bench-redteam).

Bastion's times are its own per-attack timings from the report (the attack alone, as ART's
are measured); its whole-command wall time is printed too. Each tool runs every attack
`--repeat` times, interleaved, and the fastest run counts (as `timeit` reports): on a shared
two-core machine the slower runs measure the neighbours, not the code. Bastion's runs are
separate processes, so each of its runs starts cold; ART's repeats run in one warm process.
Robust accuracies are means over the repeats: HopSkipJump is randomised (Bastion runs with
seeds 0, 1, …; ART draws from numpy's generator), so one run of either is a sample."""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "interop"))
from art_mlp import DATASETS, NumpyMlp, features_and_labels, load_package  # noqa: E402
from art.attacks.evasion import FastGradientMethod, HopSkipJump, ProjectedGradientDescentNumpy  # noqa: E402

EPS = (0.1, 0.3)


def bastion(binary, home, *args):
    p = subprocess.run([binary, "--home", home, *args], capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"bastion {args[0]} failed: {p.stderr}")
    return p.stdout


def art(attack, report, layers, x, y):
    """ART's time for the attack over every eps, and its robust accuracy per eps."""
    lo = np.array([v if v is not None else -np.inf for v in report["space"]["lo"]])
    hi = np.array([v if v is not None else np.inf for v in report["space"]["hi"]])
    clf = NumpyMlp(layers, clip_values=(lo, hi))
    if attack == "hopskipjump":
        t0 = time.perf_counter()
        adv = HopSkipJump(clf, norm=2, max_iter=20, max_eval=10000, init_eval=100, verbose=False).generate(x)
        seconds = time.perf_counter() - t0
        dist = np.linalg.norm(adv - x, axis=1)
        wrong = np.argmax(clf.predict(adv), axis=1) != y
        right = np.argmax(clf.predict(x), axis=1) == y
        return seconds, [float(np.mean(~(wrong & (dist <= eps)) & right)) for eps in EPS]
    onehot = np.eye(2)[y]
    seconds, acc = 0.0, []
    for eps in EPS:
        if attack == "fgsm":
            atk = FastGradientMethod(clf, norm=np.inf, eps=eps)
        else:
            atk = ProjectedGradientDescentNumpy(clf, norm=np.inf, eps=eps, eps_step=2.5 * eps / 40,
                                                max_iter=40, num_random_init=0, verbose=False)
        t0 = time.perf_counter()
        adv = atk.generate(x, y=onehot)
        seconds += time.perf_counter() - t0
        acc.append(float(np.mean(np.argmax(clf.predict(adv), axis=1) == y)))
    return seconds, acc


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bastion", required=True)
    ap.add_argument("--hidden", default="64,32")
    ap.add_argument("--work")
    ap.add_argument("--repeat", type=int, default=5)
    a = ap.parse_args()
    work = a.work or tempfile.mkdtemp(prefix="bench-redteam-")
    home, pkg = os.path.join(work, "home"), os.path.join(work, "pkg")
    bastion(a.bastion, home, "data", "add", os.path.join(DATASETS, "breast_cancer.csv"), "--name", "bc")
    bastion(a.bastion, home, "train", "--data", "bc", "--target", "diagnosis", "--model", "mlp",
            "--param", f"hidden=[{a.hidden}]", "--param", "epochs=100", "--output", pkg)
    manifest, layers = load_package(pkg)

    rows = []
    for attack, norm in [("fgsm", "linf"), ("pgd", "linf"), ("hopskipjump", "l2")]:
        ours_runs, art_runs, walls = [], [], []
        for k in range(a.repeat):
            t0 = time.perf_counter()
            out = json.loads(bastion(a.bastion, home, "redteam", pkg, "--data", "bc@v1", "--checks", attack,
                                     "--norm", norm, "--eps", ",".join(map(str, EPS)), "--pgd-steps", "40",
                                     "--hsj-iterations", "20", "--seed", str(k), "--format", "json"))
            walls.append(time.perf_counter() - t0)
            report = out["report"]
            ours = {e["eps"]: e for e in report["evasion"] if e["attack"] == attack and e["norm"] == norm}
            # HopSkipJump: one minimal-perturbation search serves every eps (in both tools).
            seconds = (max(e["seconds"] for e in ours.values()) if attack == "hopskipjump"
                       else sum(e["seconds"] for e in ours.values()))
            ours_runs.append((seconds, [ours[e]["robust_accuracy"] for e in EPS]))
            x, y = features_and_labels(manifest, report)
            art_runs.append(art(attack, report, layers, x, y))
        mean = lambda runs: [float(np.mean([r[1][i] for r in runs])) for i in range(len(EPS))]  # noqa: E731
        our_seconds, our_acc = min(r[0] for r in ours_runs), mean(ours_runs)
        art_seconds, art_acc = min(r[0] for r in art_runs), mean(art_runs)
        rows.append((attack, norm, EPS, our_acc, art_acc, our_seconds, art_seconds, min(walls)))

    print(f"MLP hidden=[{a.hidden}], {len(y)} held-out rows of breast_cancer.csv, eps {EPS}")
    print(f"{'attack':<12} {'norm':<5} {'robust acc (Bastion)':<22} {'robust acc (ART)':<20} "
          f"{'Bastion ms':>11} {'ART ms':>9} {'speed-up':>9} {'Bastion cmd s':>14}")
    for attack, norm, _, ours, theirs, t_ours, t_art, wall in rows:
        fmt = lambda v: "/".join(f"{x:.3f}" for x in v)  # noqa: E731
        same = all(abs(o - t) <= 0.01 for o, t in zip(ours, theirs))
        print(f"{attack:<12} {norm:<5} {fmt(ours):<22} {fmt(theirs):<20} {t_ours * 1e3:>11.2f} {t_art * 1e3:>9.1f} "
              f"{t_art / max(t_ours, 1e-9):>8.1f}x {wall:>14.2f}{'' if same else '  (accuracy differs > 0.01)'}")


if __name__ == "__main__":
    main()
