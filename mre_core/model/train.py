"""Training as the paper did it, resumable, on CUDA or CPU.

Defaults are the paper's (PAPER.md): 512x512 bilinear input, window 400/800, BCE with
logits, SGD lr 0.005, momentum 0.982, weight decay 4.457e-06, batch 32, 32 epochs.
Batch 32 is reached by gradient accumulation when it does not fit (``--micro-batch``).
Every epoch writes ``<out>/checkpoint.pt`` (model, optimiser, RNG, log) and appends
``<out>/log.csv``; ``--resume`` continues from it. The best validation Dice is exported
to ``--export`` (safetensors fp16 + JSON config with SHA-256 and the training record).

Augmentation (why): intensity scaling of the stiffness channels (stiffness varies with
stage, so the liver must be found by shape and texture, not by brightness); small
rotations, shifts and zooms (patient position and size vary). No left-right flips:
the liver lies on the patient's right (image left) in normal situs, and a flip would
teach the network livers that never occur. ``--augment`` replaces this basic set by the fuller
:class:`mre_core.model.augment.Augmenter` (also gamma, blur, noise and elastic deformation), applied to
training batches only, drawn from ``numpy.random.default_rng([seed, epoch, step])`` so a run is
reproducible and a resumed run sees the same batches.

Two outputs (``--outputs roi,liver``): the network also learns the truth liver mask (target channel 1), so the
product can keep the ROI inside one liver region. The loss is the sum of the per-channel losses
(:data:`OUTPUT_LOSS_WEIGHTS`); the best epoch is still picked by the ROI channel's validation Dice, and the
liver channel's Dice is logged as ``val_dice_liver``. ``--init-weights`` from a single-output model copies its
ROI head into every new channel (:func:`~mre_core.model.network.adapt_head`).

The magnitude image as a fourth input (``--channels kpa_confident,confidence,kpa_known,magnitude``): the anatomy a
reader draws on. ``--init-weights`` from a three-channel model widens its first convolution for the new plane
(:func:`~mre_core.model.network.adapt_input`: by default with the mean of the old channels' weights, so the plane is
seen from the first step; ``--new-channel-init zero`` starts from exactly the old network). The
magnitude plane gets its own augmentation (``Augmenter.magnitude_channels``: contrast, gamma, bias field, blur,
noise, texture) and is zeroed for a share :data:`MAGNITUDE_DROPOUT` of the slices, so an exam without a paired
magnitude image still gets an ROI from the elastogram alone.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from mre_core.analysis.preprocess import KNOWN_CHANNELS, MAGNITUDE_CHANNEL, InputSpec
from mre_core.config import Settings
from mre_core.model.dataset import ArrayDataset, cached_arrays, cohort_records, patient_split
from mre_core.model.network import (ModelConfig, adapt_head, adapt_input, build_model, check_outputs, pick_device,
                                    save_weights)

#: Weight of each output's loss in the sum (two-output training).
OUTPUT_LOSS_WEIGHTS = {"roi": 1.0, "liver": 1.0}


#: Share of training slices whose magnitude plane is zeroed (an exam may come without a paired magnitude image).
MAGNITUDE_DROPOUT = 0.25


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters; serialised into the exported model card."""

    arch: str = "unet_resnext50"
    input_size: int = 512
    epochs: int = 32
    batch: int = 32
    micro_batch: int = 8
    optimizer: str = "sgd"
    lr: float = 0.005
    momentum: float = 0.982
    weight_decay: float = 4.457e-06
    seed: int = 0
    val_fraction: float = 0.15
    augment: bool = True
    augment_style: str = "basic"  #: "basic" (:func:`augment`) or "full" (:class:`mre_core.model.augment.Augmenter`)
    bf16: bool = False
    plain_base_channels: int = 32
    max_patients: int = 0  #: 0 = all training patients
    loss: str = "bce"  #: "bce" (the paper) or "bce_dice" (BCE + soft Dice: faster convergence on a small budget)
    init_weights: str = ""  #: "" = from scratch; else "<weights dir>/<name>" to fine-tune from (its SHA-256 is recorded)
    lr_schedule: str = "constant"  #: "constant" (the paper) or "cosine" (lr x 0.5(1 + cos(pi epoch / epochs)))
    outputs: tuple[str, ...] = ("roi",)  #: network outputs: ("roi",) or ("roi", "liver") (target channels in order)
    channels: tuple[str, ...] = InputSpec().channels  #: input channels (preprocess); add "magnitude" for the anatomy
    new_channel_init: str = "mean"  #: fine-tuning with channels the start model lacks: "mean" or "zero" (adapt_input)


def set_seed(seed: int) -> None:
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)


def augment(x: torch.Tensor, y: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Random intensity scale (stiffness channels), rotation ±10°, shift ±6 %, zoom 0.9-1.1; same warp for x and y."""
    n = x.shape[0]
    u = lambda lo, hi: lo + (hi - lo) * torch.rand(n, generator=gen)  # noqa: E731
    scale = u(0.75, 1.35).view(n, 1, 1)
    x = x.clone()
    for c in (0, 2):
        x[:, c] = (x[:, c] * scale).clamp(0, 1)
    angle, zoom = u(-10, 10) * math.pi / 180, u(0.9, 1.1)
    tx, ty = u(-0.06, 0.06), u(-0.06, 0.06)
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    y = (F.grid_sample(y, grid, mode="bilinear", padding_mode="zeros", align_corners=False) > 0.5).float()
    return x, y


def segmentation_loss(logits: torch.Tensor, target: torch.Tensor, kind: str) -> torch.Tensor:
    """BCE with logits (the paper), optionally plus a soft Dice loss over the batch."""
    bce = F.binary_cross_entropy_with_logits(logits, target)
    if kind == "bce":
        return bce
    if kind == "bce_dice":
        prob = torch.sigmoid(logits)
        inter = (prob * target).sum()
        return bce + 1 - (2 * inter + 1) / (prob.sum() + target.sum() + 1)
    raise ValueError(f"unknown loss {kind!r}; choose bce or bce_dice")


def outputs_loss(logits: torch.Tensor, target: torch.Tensor, kind: str,
                 outputs: tuple[str, ...] = ("roi",)) -> torch.Tensor:
    """:func:`segmentation_loss` per output channel, weighted by :data:`OUTPUT_LOSS_WEIGHTS` and summed
    (one channel: exactly :func:`segmentation_loss`)."""
    if logits.shape[1] == 1:
        return segmentation_loss(logits, target, kind)
    if logits.shape[1] != len(outputs) or target.shape[1] != len(outputs):
        raise ValueError(f"logits {tuple(logits.shape)} / targets {tuple(target.shape)} do not have one channel per "
                         f"output {outputs}")
    return sum(OUTPUT_LOSS_WEIGHTS[name] * segmentation_loss(logits[:, c:c + 1], target[:, c:c + 1], kind)
               for c, name in enumerate(outputs))


def epoch_lr(cfg: TrainConfig, epoch: int) -> float:
    """Learning rate for a 0-based epoch; recomputed from the epoch index, so a resumed run continues the schedule.

    >>> round(epoch_lr(TrainConfig(lr=1.0, epochs=4, lr_schedule="cosine"), 2), 3)
    0.5
    """
    if cfg.lr_schedule == "constant":
        return cfg.lr
    if cfg.lr_schedule == "cosine":
        return cfg.lr * 0.5 * (1 + math.cos(math.pi * epoch / cfg.epochs))
    raise ValueError(f"unknown lr schedule {cfg.lr_schedule!r}; choose constant or cosine")


def make_optimizer(net: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(net.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    raise ValueError(f"unknown optimizer {cfg.optimizer!r}; choose sgd or adamw")


def dice_per_slice(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Dice per slice at probability 0.5 (both empty → 1)."""
    pred = logits > 0
    t = target > 0.5
    inter = (pred & t).flatten(1).sum(1).float()
    total = pred.flatten(1).sum(1).float() + t.flatten(1).sum(1).float()
    return torch.where(total > 0, 2 * inter / total.clamp(min=1), torch.ones_like(total))


def validate(net: torch.nn.Module, data: ArrayDataset, device: torch.device, micro_batch: int) -> tuple[float, float]:
    """Mean BCE loss and mean per-slice Dice of the ROI (channel 0) on a dataset."""
    scores = validate_outputs(net, data, device, micro_batch)
    return scores["val_loss"], scores["val_dice"]


def validate_outputs(net: torch.nn.Module, data: ArrayDataset, device: torch.device, micro_batch: int,
                     outputs: tuple[str, ...] = ("roi",)) -> dict[str, float]:
    """``val_loss`` (BCE, summed over output channels), ``val_dice`` (the ROI channel's mean per-slice Dice) and,
    per further output, ``val_dice_<name>``."""
    net.eval()
    losses: list[float] = []
    dices: list[list[torch.Tensor]] = [[] for _ in outputs]
    with torch.inference_mode():
        for i in range(0, len(data), micro_batch):
            x = torch.from_numpy(data.inputs[i:i + micro_batch].astype(np.float32)).to(device)
            y = torch.from_numpy(data.targets[i:i + micro_batch].astype(np.float32)).to(device)
            logits = net(x)
            if logits.shape[1] == 1:
                losses.append(F.binary_cross_entropy_with_logits(logits, y).item() * len(x))
                dices[0].append(dice_per_slice(logits, y).cpu())
                continue
            losses.append(sum(F.binary_cross_entropy_with_logits(logits[:, c:c + 1], y[:, c:c + 1]).item()
                              for c in range(logits.shape[1])) * len(x))
            for c in range(len(outputs)):
                dices[c].append(dice_per_slice(logits[:, c:c + 1], y[:, c:c + 1]).cpu())
    net.train()
    mean = lambda parts: float(torch.cat(parts).mean()) if parts else math.nan  # noqa: E731
    out = {"val_loss": float(sum(losses) / max(len(data), 1)), "val_dice": mean(dices[0])}
    out.update({f"val_dice_{name}": mean(dices[c]) for c, name in enumerate(outputs) if c > 0})
    return out


def full_augment(x: torch.Tensor, y: torch.Tensor, seed: int, epoch: int, step: int,
                 magnitude_channels: tuple[int, ...] = ()) -> tuple[torch.Tensor, torch.Tensor]:
    """:class:`mre_core.model.augment.Augmenter` on a CPU batch; random stream = f(seed, epoch, step) only.
    ``magnitude_channels``: the input planes holding the magnitude image (their own augmentation and dropout)."""
    from mre_core.model.augment import Augmenter

    rng = np.random.default_rng([int(seed), 2, int(epoch), int(step)])
    xa, ya = Augmenter(magnitude_channels=magnitude_channels)(x.numpy(), y.numpy(), rng)
    return torch.from_numpy(xa), torch.from_numpy(ya)


def magnitude_planes(channels: tuple[str, ...]) -> tuple[int, ...]:
    """Indices of the magnitude input planes among ``channels``."""
    return tuple(i for i, c in enumerate(channels) if c == MAGNITUDE_CHANNEL)


def drop_magnitude(x: torch.Tensor, planes: tuple[int, ...], gen: torch.Generator,
                   p: float = MAGNITUDE_DROPOUT) -> torch.Tensor:
    """The basic augmentation's magnitude dropout: each slice's magnitude planes zeroed with probability ``p``
    (so a model still finds the ROI in an exam without a paired magnitude image)."""
    if not planes:
        return x
    drop = torch.rand(x.shape[0], generator=gen) < p
    x = x.clone()
    for c in planes:
        x[drop, c] = 0.0
    return x


class TrainingStopped(RuntimeError):
    """``should_stop`` answered True: the epoch in progress is dropped; the checkpoint holds the last whole one."""


def train_epoch(net, opt, data: ArrayDataset, cfg: TrainConfig, device, gen: torch.Generator, bar,
                epoch: int = 0, on_step: Callable[[int, int, float], None] | None = None,
                should_stop: Callable[[], bool] | None = None) -> float:
    """One epoch over shuffled slices; an optimiser step every ``cfg.batch`` slices (accumulated).

    ``on_step(slices_done, slices_total, mean_loss)`` is called after every micro-batch; ``should_stop()`` is asked
    before each and raises :class:`TrainingStopped` when it answers True."""
    net.train()
    order = torch.randperm(len(data), generator=gen).numpy()
    total, seen = 0.0, 0
    accum = max(1, cfg.batch // cfg.micro_batch)
    opt.zero_grad(set_to_none=True)
    for step, i in enumerate(range(0, len(order), cfg.micro_batch)):
        if should_stop is not None and should_stop():
            raise TrainingStopped(f"stopped during epoch {epoch + 1}")
        idx = np.sort(order[i:i + cfg.micro_batch])
        x = torch.from_numpy(data.inputs[idx].astype(np.float32))
        y = torch.from_numpy(data.targets[idx].astype(np.float32))
        if cfg.augment and cfg.augment_style == "full":
            x, y = full_augment(x, y, cfg.seed, epoch, step, magnitude_planes(cfg.channels))
        elif cfg.augment:
            x, y = augment(x, y, gen)
            x = drop_magnitude(x, magnitude_planes(cfg.channels), gen)
        x, y = x.to(device), y.to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.bf16):
            logits = net(x)
        loss = outputs_loss(logits.float(), y, cfg.loss, cfg.outputs)
        (loss / accum).backward()
        if (step + 1) % accum == 0 or i + cfg.micro_batch >= len(order):
            opt.step()
            opt.zero_grad(set_to_none=True)
        total += loss.item() * len(idx)
        seen += len(idx)
        bar.update(len(idx))
        bar.set_postfix(loss=f"{total / seen:.4f}")
        if on_step is not None:
            on_step(seen, len(order), total / seen)
    return total / max(seen, 1)


def data_dirs(data_dir: Path | list[Path] | tuple[Path, ...]) -> list[Path]:
    """One cohort folder or several, as a list."""
    return [Path(d) for d in data_dir] if isinstance(data_dir, (list, tuple)) else [Path(data_dir)]


def load_data(data_dir: Path | list[Path], cfg: TrainConfig, out: Path,
              settings: Settings) -> tuple[ArrayDataset, ArrayDataset]:
    """Training and validation slices: the "train" split of each cohort folder, split by patient per folder
    (so every cohort style is in both parts); one cache file per folder and part."""
    spec = InputSpec(size=cfg.input_size, channels=tuple(cfg.channels))
    parts: tuple[list[ArrayDataset], list[ArrayDataset]] = ([], [])
    folders = data_dirs(data_dir)
    for k, folder in enumerate(folders):
        patients = cohort_records(folder, "train")
        if cfg.max_patients:
            patients = patients[: cfg.max_patients]
        if len(patients) < 2:
            raise ValueError(f"{folder}: need at least 2 training patients, found {len(patients)}")
        tr, va = patient_split(patients, cfg.val_fraction, cfg.seed)
        tag = "" if k == 0 else f"_{k}"
        for part, records, name in ((parts[0], tr, "train"), (parts[1], va, "val")):
            data = cached_arrays(records, spec, settings, out / f"cache_{name}_{cfg.input_size}{tag}.npz",
                                 cfg.outputs)
            if len(folders) > 1:  # phantom patient IDs restart at P0000 in every cohort: name them by folder
                data = replace(data, patient_ids=tuple(f"{k}:{i}" for i in data.patient_ids))
            part.append(data)
    return concat_datasets(parts[0]), concat_datasets(parts[1])


def concat_datasets(parts: list[ArrayDataset]) -> ArrayDataset:
    """Several datasets as one (same input size)."""
    if len(parts) == 1:
        return parts[0]
    return ArrayDataset(np.concatenate([p.inputs for p in parts]), np.concatenate([p.targets for p in parts]),
                        tuple(i for p in parts for i in p.patient_ids))


def initial_state(cfg: TrainConfig, model_cfg: ModelConfig) -> tuple[dict | None, str]:
    """Weights to fine-tune from (``cfg.init_weights`` = "<dir>/<name>") and their version; (None, "") = scratch.

    The checkpoint's checksum is verified (:func:`~mre_core.model.network.load_model`) and its architecture
    and input must match the run's, or training would silently start from a different network. When its
    input adds channels (the magnitude image), the first convolution is widened (``cfg.new_channel_init``,
    :func:`~mre_core.model.network.adapt_input`); when its
    outputs differ from the run's, the segmentation head is adapted (:func:`~mre_core.model.network.adapt_head`:
    a new output starts as a copy of the ROI channel)."""
    if not cfg.init_weights:
        return None, ""
    from mre_core.model.network import load_model

    path = Path(cfg.init_weights)
    loaded = load_model(path.parent, path.name, "cpu")
    old_channels, new_channels = loaded.config.input.channels, model_cfg.input.channels
    if loaded.config.arch != model_cfg.arch or any(c not in new_channels for c in old_channels):
        raise ValueError(f"{cfg.init_weights}: architecture {loaded.config.arch} / channels "
                         f"{old_channels} do not fit this run's {model_cfg.arch} / {new_channels} "
                         "(the run may add input channels, not drop or rename them)")
    state = adapt_input(loaded.net.state_dict(), old_channels, new_channels, cfg.new_channel_init)
    return adapt_head(state, loaded.config.outputs, model_cfg.outputs), loaded.version


def train(data_dir: Path | list[Path], out: Path, cfg: TrainConfig, settings: Settings, export: Path | None = None,
          resume: bool = False, name: str = "unet_resnext50_32x4d", show_progress: bool = True) -> dict:
    """Train (or resume) on phantom cohort folders, checkpoint every epoch, export the best-Dice model with the
    input ranges of its training studies (:mod:`mre_core.model.ranges`); returns the training record."""
    out.mkdir(parents=True, exist_ok=True)
    set_seed(cfg.seed)
    train_data, val_data = load_data(data_dir, cfg, out, settings)
    record = fit(train_data, val_data, out, cfg, settings, export=export, resume=resume, name=name,
                 show_progress=show_progress, data_label=", ".join(str(d) for d in data_dirs(data_dir)))
    if export is not None and (Path(export) / f"{name}.json").is_file():
        from mre_core.model.ranges import record_input_ranges

        record_input_ranges(export, name, data_dirs(data_dir), settings, "train")  # mre_core.analysis.input_check
    return record


def fit(train_data: ArrayDataset, val_data: ArrayDataset, out: Path, cfg: TrainConfig, settings: Settings, *,
        export: Path | None = None, resume: bool = False, name: str = "unet_resnext50_32x4d",
        show_progress: bool = True, data_label: str = "", on_epoch: Callable[[dict], None] | None = None,
        on_step: Callable[[int, int, int, float], None] | None = None,
        should_stop: Callable[[], bool] | None = None) -> dict:
    """Train a network on prepared arrays (from phantom folders or from the store), resumable from
    ``<out>/checkpoint.pt``; exports the best validation Dice to ``export`` when given.

    ``on_epoch(row)`` gets each epoch's log row; ``on_step(epoch, slices_done, slices_total, mean_loss)`` each
    micro-batch; ``should_stop()`` is asked before each micro-batch and raises :class:`TrainingStopped` (the
    checkpoint then holds the last whole epoch, so ``resume=True`` continues from there)."""
    if cfg.augment_style not in ("basic", "full"):
        raise ValueError(f"unknown augment_style {cfg.augment_style!r}; choose basic or full")
    out.mkdir(parents=True, exist_ok=True)
    set_seed(cfg.seed)
    device = pick_device(settings.device)
    outputs = check_outputs(cfg.outputs)
    for part, data in (("training", train_data), ("validation", val_data)):
        if data.targets.ndim != 4 or data.targets.shape[1] != len(outputs):
            raise ValueError(f"{part} targets have shape {data.targets.shape}, the run's outputs {outputs} need "
                             f"[N, {len(outputs)}, S, S]: build the arrays with the same outputs")
    model_cfg = ModelConfig(name=name, arch=cfg.arch, input=InputSpec(size=cfg.input_size, channels=tuple(cfg.channels)),
                            plain_base_channels=cfg.plain_base_channels, outputs=outputs)
    net = build_model(model_cfg)
    init_state, init_version = initial_state(cfg, model_cfg)
    if init_state is not None:
        net.load_state_dict(init_state)
    net = net.to(device)
    opt = make_optimizer(net, cfg)
    gen = torch.Generator().manual_seed(cfg.seed)
    log: list[dict] = []
    start, best = 0, -1.0
    ckpt = out / "checkpoint.pt"
    if resume and ckpt.is_file():
        state = torch.load(ckpt, map_location=device, weights_only=False)
        net.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        gen.set_state(state["generator"])
        start, best, log = state["epoch"], state["best_dice"], state["log"]
    for epoch in range(start, cfg.epochs):
        t0 = time.perf_counter()
        for group in opt.param_groups:
            group["lr"] = epoch_lr(cfg, epoch)
        step_cb = None if on_step is None else (lambda done, total, loss, e=epoch: on_step(e + 1, done, total, loss))
        with tqdm(total=len(train_data), desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="slice",
                  disable=not show_progress) as bar:
            train_loss = train_epoch(net, opt, train_data, cfg, device, gen, bar, epoch, step_cb, should_stop)
            scores = validate_outputs(net, val_data, device, cfg.micro_batch, outputs)
            val_loss, val_dice = scores.pop("val_loss"), scores.pop("val_dice")
            bar.set_postfix(loss=f"{train_loss:.4f}", val_dice=f"{val_dice:.4f}")
        row = {"epoch": epoch + 1, "lr": epoch_lr(cfg, epoch), "train_loss": train_loss, "val_loss": val_loss,
               "val_dice": val_dice, **scores, "seconds": time.perf_counter() - t0}
        log.append(row)
        _write_log(out / "log.csv", log)
        if val_dice > best:
            best = val_dice
            torch.save(net.state_dict(), out / "best.pt")
        torch.save({"model": net.state_dict(), "optimizer": opt.state_dict(), "generator": gen.get_state(),
                    "epoch": epoch + 1, "best_dice": best, "log": log, "config": asdict(cfg)}, ckpt)
        if on_epoch is not None:
            on_epoch(row)
    record = {"train_config": asdict(cfg), "log": log, "best_val_dice": best, "device": str(device),
              "train_slices": len(train_data), "val_slices": len(val_data),
              "train_patients": len(set(train_data.patient_ids)), "val_patients": len(set(val_data.patient_ids)),
              "data": data_label, "init_weights": init_version or "scratch"}
    if export is not None and (out / "best.pt").is_file():
        net.load_state_dict(torch.load(out / "best.pt", map_location=device))
        save_weights(net, replace(model_cfg, card={"training": record}), export)
    return record


def _write_log(path: Path, log: list[dict]) -> None:
    """Rewrite the CSV log (all epochs so far; columns = union of the rows' keys, in first-seen order)."""
    fields = list(dict.fromkeys(k for row in log for k in row))
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(log)


def search(data_dir: Path, out: Path, cfg: TrainConfig, settings: Settings, n_trials: int, trial_epochs: int) -> dict:
    """Optuna search over the paper's ranges (lr 3e-6-3e-2, wd 0-0.01, momentum 0.80-0.99); objective = val Dice."""
    import optuna

    def objective(trial: optuna.Trial) -> float:
        trial_cfg = replace(cfg, epochs=trial_epochs,
                            lr=trial.suggest_float("lr", 3e-6, 3e-2, log=True),
                            weight_decay=trial.suggest_float("weight_decay", 0.0, 0.01),
                            momentum=trial.suggest_float("momentum", 0.80, 0.99))
        rec = train(data_dir, out / f"trial_{trial.number}", trial_cfg, settings, show_progress=False)
        return float(rec["best_val_dice"])

    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=cfg.seed))
    study.optimize(objective, n_trials=n_trials)
    result = {"best_params": study.best_params, "best_val_dice": study.best_value,
              "trials": [{"params": t.params, "value": t.value} for t in study.trials]}
    (out / "search.json").write_text(json.dumps(result, indent=2))
    return result


def configure_parser(p: argparse.ArgumentParser) -> None:
    d = TrainConfig()
    p.add_argument("--data", type=Path, action="append",
                   help="phantom cohort folder (cohort.csv, dicom/, truth/); repeat to train on several styles")
    g = p.add_argument_group("training from the results store (the site's reviewed studies and imported reads)")
    g.add_argument("--from-store", action="store_true",
                   help="train on the store's labelled studies (mre_core.model.site) instead of --data folders")
    g.add_argument("--job", type=int, help="run this training job of the store (what the Model page launches)")
    g.add_argument("--date-from", default="", help="studies from this date (YYYYMMDD)")
    g.add_argument("--date-to", default="", help="studies up to this date (YYYYMMDD)")
    g.add_argument("--scanner", action="append", default=[], help="manufacturer contains this (repeatable)")
    g.add_argument("--reader", action="append", default=[], help="only this reader's ROIs (repeatable)")
    g.add_argument("--init", choices=("active", "scratch"), default="active",
                   help="fine-tune the active model (default) or train from scratch")
    g.add_argument("--user", default=os.environ.get("USER", ""), help="who started it (recorded)")
    p.add_argument("--init-weights", default="", metavar="DIR/NAME",
                   help="fine-tune from these weights (e.g. weights/unet_resnext50_32x4d) instead of from scratch")
    p.add_argument("--out", type=Path, help="run folder: checkpoint.pt, log.csv, caches (with --data)")
    p.add_argument("--arch", choices=("unet_resnext50", "unet_plain"), default=d.arch)
    p.add_argument("--channels", type=parse_channels, default=d.channels, metavar="NAME[,NAME...]",
                   help="input channels (default " + ",".join(d.channels) + "); add magnitude to feed the exam's "
                        "magnitude image (fine-tuning from a model without it widens its first layer)")
    p.add_argument("--new-channel-init", choices=("mean", "zero"), default=d.new_channel_init,
                   help="with --init-weights and a channel the start model lacks: its first-layer weights start as "
                        "the mean of the other channels' (default) or zero (exactly the start model's output)")
    p.add_argument("--outputs", type=parse_outputs, default=d.outputs, metavar="roi[,liver]",
                   help="network outputs: roi (default) or roi,liver (also learn the liver, to keep the ROI "
                        "inside one liver region)")
    p.add_argument("--export", type=Path, help="weights folder to write the best model into (e.g. weights/)")
    p.add_argument("--name", default=None, help="model file name (default by arch)")
    p.add_argument("--resume", action="store_true", help="continue from <out>/checkpoint.pt")
    p.add_argument("--search", type=int, default=0, metavar="N", help="Optuna trials before training")
    p.add_argument("--trial-epochs", type=int, default=3)
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default=None)
    for f in ("input_size", "epochs", "batch", "micro_batch", "seed", "plain_base_channels", "max_patients"):
        p.add_argument(f"--{f.replace('_', '-')}", type=int, default=getattr(d, f))
    for f in ("lr", "momentum", "weight_decay", "val_fraction"):
        p.add_argument(f"--{f.replace('_', '-')}", type=float, default=getattr(d, f))
    p.add_argument("--optimizer", choices=("sgd", "adamw"), default=d.optimizer)
    p.add_argument("--loss", choices=("bce", "bce_dice"), default=d.loss)
    p.add_argument("--lr-schedule", choices=("constant", "cosine"), default=d.lr_schedule)
    p.add_argument("--no-augment", action="store_true")
    p.add_argument("--augment", action="store_true",
                   help="fuller augmentation (mre_core.model.augment: intensity, gamma, blur, noise, elastic, "
                        "rotation/zoom; no flips) instead of the basic set; --no-augment still turns all off")
    p.add_argument("--bf16", action="store_true", help="bfloat16 autocast (fast on CPUs with AVX512-BF16/AMX)")


def parse_outputs(text: str) -> tuple[str, ...]:
    """``"roi,liver"`` → ``("roi", "liver")`` (checked: known names, ROI first).

    >>> parse_outputs("roi, liver")
    ('roi', 'liver')
    """
    try:
        return check_outputs([part.strip() for part in text.split(",") if part.strip()])
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def parse_channels(text: str) -> tuple[str, ...]:
    """``"kpa_confident,confidence,kpa_known,magnitude"`` → a tuple (checked: known names, no repeats).

    >>> parse_channels("kpa_confident, confidence, kpa_known, magnitude")[-1]
    'magnitude'
    """
    out = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = [c for c in out if c not in KNOWN_CHANNELS]
    if not out or unknown or len(set(out)) != len(out):
        raise argparse.ArgumentTypeError(f"input channels must name each of {KNOWN_CHANNELS} at most once, got {out}")
    return out


def run_from_store(args: argparse.Namespace) -> int:
    """``train --from-store``: run job ``--job`` or create one from the options and run it in the foreground."""
    from mre_core.model.site import SiteTrainParams
    from mre_core.store.inbox import Inbox
    from mre_core.store.results import Store, StoreError
    from mre_core.workflow.training_job import create_job, run_job

    settings = Settings.from_env(device=args.device)
    try:
        store = Store(settings.db_url)
    except StoreError as exc:
        print(f"error: {exc}")
        return 1
    inbox = Inbox(store, settings.inbox_dir)
    job_id = args.job
    if job_id is None:
        d = TrainConfig()
        params = SiteTrainParams(date_from=args.date_from, date_to=args.date_to, manufacturers=tuple(args.scanner),
                                 readers=tuple(args.reader), init=args.init,
                                 epochs=args.epochs if args.epochs != d.epochs else SiteTrainParams().epochs,
                                 seed=args.seed, lr=args.lr if args.lr != d.lr else SiteTrainParams().lr,
                                 bf16=args.bf16, name=args.name or "")
        try:
            job_id = create_job(store, params, settings, args.user)
        except RuntimeError as exc:
            print(f"error: {exc}")
            return 1
        print(f"training job {job_id} created; progress on the Model page or in the store")
    return run_job(store, inbox, job_id, settings, resume=args.resume)


def run_cli(args: argparse.Namespace) -> int:
    if args.from_store or args.job is not None:
        return run_from_store(args)
    if not args.data or not args.out:
        print("error: give --data FOLDER (phantom cohort) and --out RUN_FOLDER, or --from-store (the site's "
              "labelled studies)")
        return 2
    settings = Settings.from_env(device=args.device)
    cfg = TrainConfig(arch=args.arch, input_size=args.input_size, epochs=args.epochs, batch=args.batch,
                      micro_batch=args.micro_batch, optimizer=args.optimizer, lr=args.lr, momentum=args.momentum,
                      weight_decay=args.weight_decay, seed=args.seed, val_fraction=args.val_fraction,
                      augment=not args.no_augment, augment_style="full" if args.augment else "basic",
                      bf16=args.bf16, plain_base_channels=args.plain_base_channels,
                      max_patients=args.max_patients, loss=args.loss,
                      lr_schedule=args.lr_schedule, init_weights=args.init_weights, outputs=args.outputs,
                      channels=args.channels, new_channel_init=args.new_channel_init)
    if args.search:
        best = search(args.data, args.out / "search", cfg, settings, args.search, args.trial_epochs)
        cfg = replace(cfg, **best["best_params"])
        print(f"search: best {best['best_params']} (val Dice {best['best_val_dice']:.4f})")
    name = args.name or ("unet_resnext50_32x4d" if cfg.arch == "unet_resnext50" else "unet_plain")
    data = args.data if len(args.data) > 1 else args.data[0]
    record = train(data, args.out, cfg, settings, args.export, args.resume, name)
    print(f"best validation Dice {record['best_val_dice']:.4f}; log {args.out / 'log.csv'}")
    return 0
