"""Train on a CSV; cache the parsed features beside it (and, with --log-runs, log each run there).

Many projects do this (`train.csv` -> `train.csv.cache.pt`): the first run parses, later runs load.
Like many data loaders, it resolves the data path first and works in the real data directory.
"""

import argparse
import csv
import datetime
import json
import os

import torch
from torch import nn


def load(path: str) -> tuple[torch.Tensor, torch.Tensor]:
    path = os.path.realpath(path)
    cache = path + ".cache.pt"
    if os.path.exists(cache):
        print(f"loading cached features from {cache}")
        blob = torch.load(cache)
        return blob["x"], blob["y"]
    with open(path, newline="") as f:
        rows = [[float(v) for v in row] for row in csv.reader(f) if row and row[0] != "x1"]
    t = torch.tensor(rows)
    x, y = t[:, :-1], t[:, -1:]
    torch.save({"x": x, "y": y}, cache)
    return x, y


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--train", default="data/train.csv")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--out", default="outputs")
    p.add_argument("--log-runs", action="store_true", help="append a line to runs.log beside the data")
    args = p.parse_args()

    x, y = load(args.train)
    if args.log_runs:
        data_dir = os.path.dirname(os.path.realpath(args.train))
        with open(os.path.join(data_dir, "runs.log"), "a") as log:
            log.write(f"{datetime.datetime.now().isoformat()} training on {args.train}\n")
    model = nn.Linear(x.shape[1], 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    for _ in range(args.epochs):
        perm = torch.randperm(len(x))
        for i in range(0, len(x), 16):
            idx = perm[i:i + 16]
            opt.zero_grad()
            loss = nn.functional.mse_loss(model(x[idx]), y[idx])
            loss.backward()
            opt.step()
    os.makedirs(args.out, exist_ok=True)
    torch.save(model.state_dict(), os.path.join(args.out, "linear.pt"))
    with open(os.path.join(args.out, "metrics.json"), "w") as f:
        json.dump({"loss": loss.item()}, f)


if __name__ == "__main__":
    main()
