"""A small CPU training run, deliberately unseeded: run it twice and the results differ.

Under `repro run` it becomes reproducible without a code change: repro injects the seed and
deterministic settings through its start-up hook.

    repro run -- python examples/train.py
"""

import json
import pathlib

import torch
from torch.utils.data import DataLoader, TensorDataset

OUT = pathlib.Path(__file__).parent / "outputs"


def main() -> None:
    torch.set_num_threads(2)
    # Synthetic regression data and initial weights: both come from the unseeded global RNG.
    x = torch.randn(512, 16)
    w_true = torch.randn(16, 1)
    y = x @ w_true + 0.1 * torch.randn(512, 1)
    model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    loader = DataLoader(TensorDataset(x, y), batch_size=64, shuffle=True)
    loss = torch.tensor(0.0)
    for epoch in range(5):
        for xb, yb in loader:
            opt.zero_grad()
            loss = torch.nn.functional.mse_loss(model(xb), yb)
            loss.backward()
            opt.step()
        print(f"epoch {epoch} loss {loss.item():.6f}", flush=True)
    OUT.mkdir(exist_ok=True)
    torch.save(model.state_dict(), OUT / "model.pt")
    with torch.no_grad():
        full = torch.nn.functional.mse_loss(model(x), y).item()
    (OUT / "metrics.json").write_text(json.dumps({"loss": full, "epochs": 5}) + "\n")


if __name__ == "__main__":
    main()
