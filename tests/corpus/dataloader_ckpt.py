"""Train a small MLP with a multi-worker DataLoader and save a resumable checkpoint."""

import argparse
import json
import os

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset


class NoisyRegression(Dataset):
    def __init__(self, n: int, dim: int) -> None:
        self.x = torch.randn(n, dim)
        w = torch.randn(dim, 1)
        self.y = self.x @ w + 0.1 * torch.randn(n, 1)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i):
        # a little augmentation noise, drawn in the worker process
        return self.x[i] + 0.01 * torch.randn_like(self.x[i]), self.y[i]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--ckpt-dir", default="checkpoints")
    args = p.parse_args()

    torch.set_num_threads(1)
    data = NoisyRegression(256, 8)
    loader = DataLoader(data, batch_size=args.batch_size, shuffle=True,
                        num_workers=args.workers, persistent_workers=False)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 1))
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.9)
    history = []
    for epoch in range(args.epochs):
        total = 0.0
        for xb, yb in loader:
            opt.zero_grad()
            loss = nn.functional.mse_loss(model(xb), yb)
            loss.backward()
            opt.step()
            total += loss.item() * len(xb)
        sched.step()
        history.append(total / len(data))
        print(f"epoch {epoch} train_loss={history[-1]:.6f}", flush=True)

    os.makedirs(args.ckpt_dir, exist_ok=True)
    torch.save({"epoch": args.epochs, "model_state_dict": model.state_dict(),
                "optimizer_state_dict": opt.state_dict(),
                "scheduler_state_dict": sched.state_dict(), "loss": history[-1],
                "args": vars(args)},
               os.path.join(args.ckpt_dir, "last.pt"))
    with open("metrics.json", "w") as f:
        json.dump({"train_loss": history[-1], "epochs": args.epochs, "history": history}, f,
                  indent=2)


if __name__ == "__main__":
    main()
