"""Build, save and load the segmentation network; pick the device.

Models describe themselves: ``weights/<name>.safetensors`` (fp16) sits next to
``weights/<name>.json`` holding the architecture, the input spec, the threshold, the
training record, the metrics and the SHA-256 of the weights file, which is verified on
every load (so a truncated or swapped file is refused with a clear error).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import segmentation_models_pytorch as smp
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from mre_core.analysis.preprocess import InputSpec

ARCHITECTURES = ("unet_resnext50", "unet_plain")
#: What a network's output channels can be: the expert ROI (always channel 0) and the liver itself.
OUTPUT_NAMES = ("roi", "liver")
#: The segmentation head's tensors (smp U-Net, plain U-Net): one output channel per entry of ``outputs``.
HEAD_KEYS = ("segmentation_head.0.weight", "segmentation_head.0.bias", "head.weight", "head.bias")
#: The first convolution (smp ResNeXt encoder, plain U-Net): one input plane per entry of ``input.channels``.
FIRST_CONV_KEYS = ("encoder.conv1.weight", "down.0.0.weight")


class WeightsError(RuntimeError):
    """Model weights missing, corrupt or inconsistent with their config."""


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a network and feed it (serialised next to the weights).

    Parameters
    ----------
    name: file stem under ``weights/``.
    arch: ``"unet_resnext50"`` (the paper's UNet-ResNeXt50-32x4d) or ``"unet_plain"`` (baseline).
    input: the :class:`~mre_core.analysis.preprocess.InputSpec` the model was trained with.
    threshold: probability above which a pixel is ROI.
    plain_base_channels: width of the first level of the plain U-Net.
    card: free-form model-card fields (intended use, training data, metrics, date...).
    outputs: the output channels in order (:data:`OUTPUT_NAMES`): ``"roi"`` (the expert ROI) first, optionally
        ``"liver"`` (the whole liver, used to keep the ROI inside one liver region). A JSON without the key is
        a single-output ROI model.
    """

    name: str = "unet_resnext50_32x4d"
    arch: str = "unet_resnext50"
    input: InputSpec = field(default_factory=InputSpec)
    threshold: float = 0.5
    plain_base_channels: int = 32
    card: dict[str, Any] = field(default_factory=dict)
    outputs: tuple[str, ...] = ("roi",)

    def __post_init__(self) -> None:
        object.__setattr__(self, "outputs", check_outputs(self.outputs))

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["input"]["channels"] = list(self.input.channels)
        d["outputs"] = list(self.outputs)
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ModelConfig:
        spec = d.get("input", {})
        inp = InputSpec(**{**spec, "channels": tuple(spec.get("channels", InputSpec().channels))})
        return cls(
            name=d["name"],
            arch=d["arch"],
            input=inp,
            threshold=float(d.get("threshold", 0.5)),
            plain_base_channels=int(d.get("plain_base_channels", 32)),
            card=dict(d.get("card", {})),
            outputs=tuple(d.get("outputs", ("roi",))),
        )


def check_outputs(outputs: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """``outputs`` as a tuple, after checking it: known names, no repeats, ``"roi"`` first.

    >>> check_outputs(["roi", "liver"])
    ('roi', 'liver')
    """
    out = tuple(str(o) for o in outputs)
    unknown = [o for o in out if o not in OUTPUT_NAMES]
    if unknown or not out or out[0] != "roi" or len(set(out)) != len(out):
        raise ValueError(f"model outputs must start with 'roi' and name each of {OUTPUT_NAMES} at most once, "
                         f"got {out}")
    return out


class PlainUNet(nn.Module):
    """The classic U-Net (Ronneberger 2015) without a pretrained encoder: the paper's baseline."""

    def __init__(self, in_channels: int = 3, base: int = 32, depth: int = 4, classes: int = 1) -> None:
        super().__init__()
        widths = [base * 2**i for i in range(depth + 1)]
        self.down = nn.ModuleList()
        prev = in_channels
        for w in widths:
            self.down.append(_double_conv(prev, w))
            prev = w
        self.up = nn.ModuleList()
        self.fuse = nn.ModuleList()
        for w in reversed(widths[:-1]):
            self.up.append(nn.ConvTranspose2d(prev, w, kernel_size=2, stride=2))
            self.fuse.append(_double_conv(2 * w, w))
            prev = w
        self.head = nn.Conv2d(prev, classes, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else nn.functional.max_pool2d(x, 2))
            skips.append(x)
        x = skips.pop()
        for up, fuse in zip(self.up, self.fuse):
            x = fuse(torch.cat([up(x), skips.pop()], dim=1))
        return self.head(x)


def _double_conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


def build_model(config: ModelConfig) -> nn.Module:
    """A freshly initialised network for ``config.arch`` (never downloads anything), one output channel per
    entry of ``config.outputs``."""
    channels, classes = len(config.input.channels), len(config.outputs)
    if config.arch == "unet_resnext50":
        return smp.Unet("resnext50_32x4d", encoder_weights=None, in_channels=channels, classes=classes)
    if config.arch == "unet_plain":
        return PlainUNet(in_channels=channels, base=config.plain_base_channels, classes=classes)
    raise ValueError(f"unknown architecture {config.arch!r}; choose one of {ARCHITECTURES}")


def adapt_head(state: dict[str, torch.Tensor], old_outputs: tuple[str, ...],
               new_outputs: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """A state dict of a network with ``old_outputs`` made to fit one with ``new_outputs`` (for fine-tuning).

    Only the segmentation head (:data:`HEAD_KEYS`) changes: each new channel takes the weights of the old
    channel of the same name, or of the ROI channel when the old network had no such output, so a liver
    channel added to a single-output model starts as a copy of the ROI detector. Everything else is kept as is.
    """
    old_outputs, new_outputs = check_outputs(old_outputs), check_outputs(new_outputs)
    if old_outputs == new_outputs:
        return state
    source = torch.tensor([old_outputs.index(n) if n in old_outputs else 0 for n in new_outputs])
    return {k: v.index_select(0, source.to(v.device)).clone() if k in HEAD_KEYS else v for k, v in state.items()}


#: How :func:`adapt_input` starts the weights of an input channel the old network did not have.
NEW_CHANNEL_INITS = ("zero", "mean")


def adapt_input(state: dict[str, torch.Tensor], old_channels: tuple[str, ...],
                new_channels: tuple[str, ...], init: str = "zero") -> dict[str, torch.Tensor]:
    """A state dict of a network fed ``old_channels`` made to fit one fed ``new_channels`` (for fine-tuning).

    Only the first convolution (:data:`FIRST_CONV_KEYS`) changes: each input plane keeps the weights of the old
    channel of the same name. A channel the old network did not have (e.g. the magnitude image) starts with
    ``init``: ``"zero"`` weights (the widened network computes exactly what the old one did until training moves
    them) or the ``"mean"`` of the old channels' weights (as timm's ``adapt_input_conv`` starts extra channels:
    the new plane is seen from the first step; on the magnitude fine-tune, zero weights stayed at a tenth of the
    other channels' norm after two epochs, docs/GENERALISATION.md). Every old channel must still be an input (a
    channel cannot be dropped without changing what was learned).
    """
    if init not in NEW_CHANNEL_INITS:
        raise ValueError(f"unknown new-channel init {init!r}; choose one of {NEW_CHANNEL_INITS}")
    old_channels, new_channels = tuple(old_channels), tuple(new_channels)
    if old_channels == new_channels:
        return state
    missing = [c for c in old_channels if c not in new_channels]
    if missing:
        raise ValueError(f"cannot drop input channel(s) {missing}: the new input {new_channels} must contain "
                         f"every channel of the old {old_channels}")
    out = dict(state)
    for key in FIRST_CONV_KEYS:
        if key not in state:
            continue
        w = state[key]
        if w.shape[1] != len(old_channels):
            raise ValueError(f"{key} has {w.shape[1]} input planes, the old input names {len(old_channels)}")
        new = torch.zeros((w.shape[0], len(new_channels), *w.shape[2:]), dtype=w.dtype, device=w.device)
        for i, name in enumerate(new_channels):
            if name in old_channels:
                new[:, i] = w[:, old_channels.index(name)]
            elif init == "mean":
                new[:, i] = w.mean(dim=1)
        out[key] = new
    return out


def pick_device(preference: str = "auto") -> torch.device:
    """``"auto"`` → CUDA when available, else CPU. Asking for CUDA without one is an error."""
    if preference == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was asked for, but torch sees no CUDA device; use --device cpu or auto")
    if preference in ("cuda", "auto") and torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_weights(net: nn.Module, config: ModelConfig, weights_dir: Path) -> Path:
    """Write ``<name>.safetensors`` (fp16) and ``<name>.json`` (config + SHA-256); returns the weights path."""
    weights_dir = Path(weights_dir)
    weights_dir.mkdir(parents=True, exist_ok=True)
    path = weights_dir / f"{config.name}.safetensors"
    state = {k: v.detach().to("cpu") for k, v in net.state_dict().items()}
    state = {k: (v.half() if v.is_floating_point() else v).contiguous() for k, v in state.items()}
    save_file(state, str(path), metadata={"arch": config.arch, "name": config.name})
    record = config.to_json()
    record["sha256"] = sha256_file(path)
    record["saved_utc"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    (weights_dir / f"{config.name}.json").write_text(json.dumps(record, indent=2) + "\n")
    return path


@dataclass
class LoadedModel:
    """A network ready for inference, with what it is and where it runs."""

    net: nn.Module
    config: ModelConfig
    sha256: str
    device: torch.device

    @property
    def version(self) -> str:
        return f"{self.config.name}@{self.sha256[:12]}"


def load_model(weights_dir: Path, name: str, device: str = "auto") -> LoadedModel:
    """Load ``<weights_dir>/<name>.safetensors`` after checking its SHA-256 against ``<name>.json``.

    Raises
    ------
    WeightsError
        With the remedy, when a file is missing, the checksum differs or the tensors do not fit.
    """
    weights_dir = Path(weights_dir)
    cfg_path, w_path = weights_dir / f"{name}.json", weights_dir / f"{name}.safetensors"
    if not cfg_path.is_file() or not w_path.is_file():
        raise WeightsError(
            f"model {name!r} not found in {weights_dir} (need {w_path.name} and {cfg_path.name}); "
            "train one with `python -m mre_core train` or set MRE_WEIGHTS_DIR"
        )
    record = json.loads(cfg_path.read_text())
    actual = sha256_file(w_path)
    if record.get("sha256") != actual:
        raise WeightsError(
            f"{w_path.name}: SHA-256 {actual[:12]}… does not match {cfg_path.name} "
            f"({str(record.get('sha256'))[:12]}…): the file is corrupt or was replaced; restore it from git"
        )
    config = ModelConfig.from_json(record)
    net = build_model(config)
    try:
        state = {k: v.float() if v.is_floating_point() else v for k, v in load_file(str(w_path)).items()}
        net.load_state_dict(state)
    except (RuntimeError, KeyError) as exc:
        raise WeightsError(f"{w_path.name} does not fit architecture {config.arch!r}: {exc}") from exc
    dev = pick_device(device)
    # channels-last memory layout: the same numbers (max |Δp| 2.4e-6, identical masks on 5 slices at 256 px) in
    # 0.77 s instead of 0.98 s per study on this project's 2-core CPU (/work/devtools/cl_probe.py, issue 13)
    net.to(dev, memory_format=torch.channels_last).eval()
    return LoadedModel(net, config, actual, dev)


def untrained_model(arch: str = "unet_resnext50", device: str = "auto", seed: int = 0) -> LoadedModel:
    """A randomly initialised model (for tests and before any weights exist); sha256 is ``"untrained"``."""
    torch.manual_seed(seed)
    config = ModelConfig(name=f"{arch}-untrained", arch=arch)
    dev = pick_device(device)
    net = build_model(config).to(dev).eval()
    return LoadedModel(net, config, "untrained", dev)
