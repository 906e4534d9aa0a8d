"""Fit a noisy curve by gradient descent and save the training curve as PDF and PNG."""

import argparse
import json
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--out", default="figures")
    args = p.parse_args()

    x = np.linspace(-1, 1, 64)
    y = 0.5 * x ** 3 - x + np.random.normal(0, 0.05, x.shape)
    coef = np.random.normal(0, 0.1, 4)
    losses = []
    for _ in range(args.steps):
        feats = np.stack([x ** k for k in range(4)], axis=1)
        resid = feats @ coef - y
        losses.append(float(np.mean(resid ** 2)))
        coef -= args.lr * 2 * feats.T @ resid / len(x)

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(7, 3))
    ax1.plot(losses)
    ax1.set_yscale("log")
    ax1.set_xlabel("step")
    ax1.set_ylabel("mse")
    ax2.scatter(x, y, s=6, label="data")
    ax2.plot(x, np.stack([x ** k for k in range(4)], axis=1) @ coef, color="C1", label="fit")
    ax2.legend()
    fig.suptitle("training")
    fig.tight_layout()
    os.makedirs(args.out, exist_ok=True)
    fig.savefig(os.path.join(args.out, "loss.pdf"))
    fig.savefig(os.path.join(args.out, "loss.png"), dpi=80)
    with open("metrics.json", "w") as f:
        json.dump({"final_mse": losses[-1]}, f)


if __name__ == "__main__":
    main()
