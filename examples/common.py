"""Shared pieces of the example scripts: arguments, training loop, results and plots."""

import argparse
import csv
import json
import os
import random
import sys

import numpy as np
import torch
from tqdm import tqdm


def int_at_least(minimum: int):
    """argparse type: an integer >= ``minimum``."""
    def parse(text: str) -> int:
        value = int(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    parse.__name__ = f"integer >= {minimum}"
    return parse


positive_int = int_at_least(1)


def non_negative_float(text: str) -> float:
    """argparse type: a finite number >= 0."""
    value = float(text)
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be finite and >= 0, got {text}")
    return value


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0."""
    value = non_negative_float(text)
    if value == 0:
        raise argparse.ArgumentTypeError("must be > 0, got 0")
    return value


def fraction(text: str) -> float:
    """argparse type: a number in [0, 1]."""
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {text}")
    return value


def seed_value(text: str) -> int:
    """argparse type: a seed numpy accepts, 0 .. 2**32 - 1."""
    value = int(text)
    if not 0 <= value < 2 ** 32:
        raise argparse.ArgumentTypeError(f"must be in 0 .. 2**32 - 1, got {value}")
    return value


def device_name(text: str) -> str:
    """argparse type: a torch device that this machine has."""
    try:
        device = torch.device(text)
    except RuntimeError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    backend = getattr(torch, device.type, None)
    available = getattr(backend, "is_available", None)
    if device.type != "cpu" and (available is None or not available()):
        raise argparse.ArgumentTypeError(f"{text}: no {device.type} device is available here")
    count = torch.cuda.device_count() if device.type == "cuda" else None
    if count is not None and device.index is not None and device.index >= count:
        raise argparse.ArgumentTypeError(f"{text}: only {count} CUDA device(s)")
    return text


def base_parser(description: str, epochs: int) -> argparse.ArgumentParser:
    """Arguments every example takes: --device, --dtype, --epochs, --seed, --out."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--device", default="cpu", type=device_name,
                        help="torch device, e.g. cpu or cuda")
    parser.add_argument("--dtype", default="float64", choices=["float32", "float64"])
    parser.add_argument("--epochs", type=positive_int, default=epochs)
    parser.add_argument("--seed", type=seed_value, default=0)
    parser.add_argument("--out", default="results", help="folder for the CSV/JSON results and plots")
    return parser


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def dtype_of(name: str) -> torch.dtype:
    return {"float32": torch.float32, "float64": torch.float64}[name]


def hit_rate(logits, y) -> float:
    """Fraction of rows of ``logits`` whose largest entry is at the label ``y``."""
    return float((logits.argmax(-1) == y).double().mean())


def accuracy(model, x, y, batch_size: int = 512) -> float:
    """Classification accuracy of ``model`` in eval mode."""
    model.eval()
    with torch.no_grad():
        return hit_rate(torch.cat([model(x[i:i + batch_size]) for i in range(0, len(x), batch_size)]), y)


def train_epoch(model, optimizer, loss_fn, x, y, batch_size: int, generator=None) -> float:
    """One pass of shuffled minibatches (a last batch of one sample is skipped, batch norm needs
    two); returns the mean training loss."""
    model.train()
    order = torch.randperm(len(x), generator=generator, device="cpu").to(x.device)
    total = 0.0
    for i in range(0, len(x), batch_size):
        idx = order[i:i + batch_size]
        if len(idx) < 2:
            continue
        optimizer.zero_grad()
        loss = loss_fn(model(x[idx]), y[idx])
        loss.backward()
        optimizer.step()
        total += float(loss.detach()) * len(idx)
    return total / len(x)


def train(model, optimizer, x, y, epochs: int, batch_size: int, x_eval=None, y_eval=None,
          label: str = "train", generator=None):
    """Minibatch cross-entropy training; returns per-epoch loss and evaluation accuracy."""
    history = {"epoch": [], "loss": [], "eval_accuracy": []}
    loss_fn = torch.nn.CrossEntropyLoss()
    bar = tqdm(range(epochs), desc=label, leave=False, file=sys.stderr)
    for epoch in bar:
        history["epoch"].append(epoch + 1)
        history["loss"].append(train_epoch(model, optimizer, loss_fn, x, y, batch_size, generator))
        acc = accuracy(model, x_eval, y_eval) if x_eval is not None else float("nan")
        history["eval_accuracy"].append(acc)
        bar.set_postfix(loss=f"{history['loss'][-1]:.3f}", acc=f"{acc:.3f}")
    return history


def print_table(title: str, columns, rows) -> None:
    print(f"\n{title}\n")
    print("| " + " | ".join(columns) + " |")
    print("|" + "|".join("---" for _ in columns) + "|")
    for row in rows:
        print("| " + " | ".join(f"{v:.4f}" if isinstance(v, float) else str(v) for v in row) + " |")


def save_results(out: str, name: str, columns, rows, histories: dict) -> None:
    """Write ``name.csv`` (the table), ``name.json`` (table and curves) and ``name.png``."""
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, f"{name}.csv"), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        writer.writerows(rows)
    with open(os.path.join(out, f"{name}.json"), "w") as f:
        json.dump({"columns": list(columns), "rows": rows, "curves": histories}, f, indent=1)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    for label, h in histories.items():
        ax_loss.plot(h["epoch"], h["loss"], label=label)
        ax_acc.plot(h["epoch"], h["eval_accuracy"], label=label)
    ax_loss.set(xlabel="epoch", ylabel="training loss", yscale="log")
    ax_acc.set(xlabel="epoch", ylabel="evaluation accuracy")
    ax_acc.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(os.path.join(out, f"{name}.png"), dpi=100)
    plt.close(fig)
    print(f"\nresults written to {os.path.join(out, name)}.{{csv,json,png}}")
