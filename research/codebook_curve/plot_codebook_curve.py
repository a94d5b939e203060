"""Draw docs/codebook-curve.png from the JSON files research/codebook_curve/codebook_curve.sh leaves in runs/curve/.

    python research/codebook_curve/plot_codebook_curve.py [RUNS_DIR] [OUT_PNG]
"""
import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main(runs=Path("runs/curve"), out=Path("docs/codebook-curve.png")):
    sizes = [16, 64, 256, 1024]
    local = [json.loads((runs / f"k{k}-local.json").read_text())["summary"] for k in sizes]
    fig, (f1_ax, use_ax) = plt.subplots(1, 2, figsize=(9, 3.4))
    for key, label in (("note_f1", "note F1"), ("onset_f1", "onset F1"), ("cell_f1", "cell F1")):
        f1_ax.plot(sizes, [s[key] for s in local], "o-", label=label)
    use_ax.plot(sizes, [s["perplexity"] / k for s, k in zip(local, sizes)], "o-", label="local (default)")
    glob = runs / "k256-global.json"
    if glob.exists():
        g = json.loads(glob.read_text())["summary"]
        f1_ax.plot([256], [g["note_f1"]], "x", color="C0", label="note F1, global mix")
        use_ax.plot([256], [g["perplexity"] / 256], "x", color="C3", label="global mix")
    use_ax.axhline(0.75, color="grey", lw=0.8, ls="--", label="target 75%")
    for ax in (f1_ax, use_ax):
        ax.set_xscale("log", base=2)
        ax.set_xticks(sizes, [str(k) for k in sizes])
        ax.set_xlabel("codebook size (16 codes a frame)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    f1_ax.set_title("held-out reconstruction, 100 epochs")
    use_ax.set_title("perplexity / codebook size")
    f1_ax.set_ylim(0, 1)
    use_ax.set_ylim(0, 1)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    print(out)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="?", type=Path, default=Path("runs/curve"), help="holds k16-local.json ...")
    parser.add_argument("out", nargs="?", type=Path, default=Path("docs/codebook-curve.png"))
    args = parser.parse_args()
    missing = [f"k{k}-local.json" for k in (16, 64, 256, 1024) if not (args.runs / f"k{k}-local.json").exists()]
    if missing:
        parser.error(f"{args.runs}: no {', '.join(missing)} (run research/codebook_curve/codebook_curve.sh first)")
    main(args.runs, args.out)
