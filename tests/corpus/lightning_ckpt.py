"""A classifier whose checkpoint is laid out as PyTorch Lightning's ModelCheckpoint writes it.

Lightning is not needed: the dict is built with plain torch, including what makes such files
differ between checkouts, the callback state holding the absolute checkpoint directory.
"""

import argparse
import json
import os

import torch
from torch import nn


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--max-epochs", type=int, default=2)
    p.add_argument("--hidden", type=int, default=16)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--default-root-dir", default=".")
    args = p.parse_args()

    x = torch.randn(200, 4)
    y = (x.sum(dim=1) > 0).long()
    model = nn.Sequential(nn.Linear(4, args.hidden), nn.Tanh(), nn.Linear(args.hidden, 2))
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)
    step = 0
    for epoch in range(args.max_epochs):
        for i in range(0, len(x), 20):
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(x[i:i + 20]), y[i:i + 20])
            loss.backward()
            opt.step()
            step += 1
        acc = (model(x).argmax(1) == y).float().mean().item()
        print(f"Epoch {epoch}: train_loss={loss.item():.4f} train_acc={acc:.4f}")

    dirpath = os.path.abspath(os.path.join(args.default_root_dir, "checkpoints"))
    os.makedirs(dirpath, exist_ok=True)
    filename = f"epoch={args.max_epochs - 1}-step={step}.ckpt"
    best = os.path.join(dirpath, filename)
    callback_key = ("ModelCheckpoint{'monitor': None, 'mode': 'min', 'every_n_train_steps': 0, "
                    "'every_n_epochs': 1, 'train_time_interval': None}")
    checkpoint = {
        "epoch": args.max_epochs - 1,
        "global_step": step,
        "pytorch-lightning_version": "2.4.0",
        "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
        "loops": {"fit_loop": {"epoch_progress": {"current": {"completed": args.max_epochs}}}},
        "callbacks": {callback_key: {
            "monitor": None, "best_model_score": None, "best_model_path": best,
            "current_score": None, "dirpath": dirpath, "best_k_models": {},
            "kth_best_model_path": "", "kth_value": torch.tensor(float("inf")),
            "last_model_path": ""}},
        "optimizer_states": [opt.state_dict()],
        "lr_schedulers": [],
        "hparams_name": "kwargs",
        "hyper_parameters": {"hidden": args.hidden, "lr": args.lr},
    }
    torch.save(checkpoint, best)
    with open("metrics.json", "w") as f:
        json.dump({"train_loss": loss.item(), "train_acc": acc}, f)


if __name__ == "__main__":
    main()
