"""Train and save to the path given with --save (overwriting what an earlier run left there)."""

import argparse
import json
import os

import torch
from torch import nn


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--save", default="model.pt", help="where to write the trained weights")
    p.add_argument("--steps", type=int, default=50)
    args = p.parse_args()

    if os.path.exists(args.save):
        print(f"warning: {args.save} exists and will be overwritten")
    x = torch.randn(128, 6)
    y = torch.sin(x).sum(dim=1, keepdim=True)
    model = nn.Sequential(nn.Linear(6, 12), nn.GELU(), nn.Linear(12, 1))
    opt = torch.optim.AdamW(model.parameters(), lr=0.01)
    for step in range(args.steps):
        opt.zero_grad()
        loss = nn.functional.mse_loss(model(x), y)
        loss.backward()
        opt.step()
        if step % 10 == 0:
            print(f"step {step} loss={loss.item():.5f}")
    torch.save(model.state_dict(), args.save)
    with open("metrics.json", "w") as f:
        json.dump({"loss": loss.item(), "steps": args.steps}, f)


if __name__ == "__main__":
    main()
