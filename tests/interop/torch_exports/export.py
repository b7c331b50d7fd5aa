"""Writes the torch.onnx exports that test_onnx.py runs: an MLP and a small CNN trained for a
few epochs on the shipped digits, each exported by both of torch's exporters (the default
`torch.export`-based one and the older TorchScript one, `dynamo=False`).

Not run by CI: torch's Linux wheels from PyPI pull about 5 GB of CUDA libraries, so the
exported files are kept here instead (a few kilobytes each) with the versions that made
them in `versions.json`. To remake them:

    python -m venv /tmp/torch-venv
    /tmp/torch-venv/bin/pip install torch==2.15.0 onnx onnxscript numpy
    /tmp/torch-venv/bin/python tests/interop/torch_exports/export.py
"""
import json
import os

import numpy as np
import onnx
import torch
from torch import nn

HERE = os.path.dirname(os.path.abspath(__file__))
DIGITS = os.path.join(HERE, "..", "..", "..", "datasets", "digits.csv")


def digits():
    with open(DIGITS) as f:
        header = f.readline().strip().split(",")
        rows = [line.strip().split(",") for line in f if line.strip()]
    t = header.index("digit")
    x = np.array([[float(v) for i, v in enumerate(r) if i != t] for r in rows], dtype=np.float32)
    y = np.array([int(float(r[t])) for r in rows])
    return x, y


def mlp():
    return nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 10))


class Cnn(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, kernel_size=3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(4 * 4 * 4, 10)

    def forward(self, x):
        return self.fc(torch.flatten(self.pool(torch.relu(self.conv(x))), 1))


def fit(model, x, y, epochs=30):
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    for _ in range(epochs):
        for i in range(0, len(xt), 128):
            opt.zero_grad()
            nn.functional.cross_entropy(model(xt[i:i + 128]), yt[i:i + 128]).backward()
            opt.step()
    return model.eval()


def export(model, example, name):
    for dynamo in (True, False):
        path = os.path.join(HERE, f"{name}-{'dynamo' if dynamo else 'torchscript'}.onnx")
        kw = ({"dynamic_shapes": ({0: torch.export.Dim("batch")},)} if dynamo
              else {"dynamic_axes": {"input": {0: "batch"}, "logits": {0: "batch"}}})
        torch.onnx.export(model, (example,), path, dynamo=dynamo, input_names=["input"],
                          output_names=["logits"], external_data=False, **kw)
        onnx.checker.check_model(onnx.load(path))


def main():
    torch.manual_seed(0)
    x, y = digits()
    x = x / 16.0
    export(fit(mlp(), x, y), torch.from_numpy(x[:2]), "mlp")
    images = x.reshape(-1, 1, 8, 8)
    export(fit(Cnn(), images, y), torch.from_numpy(images[:2]), "cnn")
    with open(os.path.join(HERE, "versions.json"), "w") as f:
        json.dump({"torch": torch.__version__, "onnx": onnx.__version__,
                   "inputs": "digits pixels divided by 16"}, f, indent=2)
        f.write("\n")


if __name__ == "__main__":
    main()
