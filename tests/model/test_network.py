import json

import pytest
import torch

from mre_core.analysis.preprocess import InputSpec
from mre_core.model.network import ModelConfig, WeightsError, build_model, load_model, pick_device, save_weights


@pytest.mark.parametrize("arch", ["unet_resnext50", "unet_plain"])
def test_both_architectures_map_three_channels_to_one_logit_map(arch):
    net = build_model(ModelConfig(arch=arch, plain_base_channels=8)).eval()
    with torch.inference_mode():
        y = net(torch.rand(2, 3, 64, 64))
    assert y.shape == (2, 1, 64, 64)


def test_resnext50_encoder_is_the_papers_32x4d_grouped_convolution():
    net = build_model(ModelConfig(arch="unet_resnext50"))
    conv = net.encoder.layer1[0].conv2
    assert conv.groups == 32 and conv.out_channels == 128  # 32 groups x 4 channels


def test_unknown_architecture_lists_the_valid_ones():
    with pytest.raises(ValueError, match="unet_plain"):
        build_model(ModelConfig(arch="vit"))


def _tiny(tmp_path, name="tiny"):
    cfg = ModelConfig(name=name, arch="unet_plain", plain_base_channels=8, input=InputSpec(size=64),
                      card={"training_data": "test"})
    torch.manual_seed(1)
    net = build_model(cfg).eval()
    save_weights(net, cfg, tmp_path)
    return net, cfg


def test_saved_weights_are_fp16_and_reload_to_the_same_outputs(tmp_path):
    net, cfg = _tiny(tmp_path)
    record = json.loads((tmp_path / "tiny.json").read_text())
    assert len(record["sha256"]) == 64 and record["arch"] == "unet_plain" and record["input"]["size"] == 64
    loaded = load_model(tmp_path, "tiny", "cpu")
    assert loaded.config.input.size == 64 and loaded.config.card["training_data"] == "test"
    x = torch.rand(1, 3, 64, 64)
    with torch.inference_mode():
        assert torch.allclose(net(x), loaded.net(x), atol=5e-2)
    from safetensors.torch import load_file
    assert all(v.dtype == torch.float16 for v in load_file(str(tmp_path / "tiny.safetensors")).values()
               if v.is_floating_point())


def test_a_corrupted_weights_file_is_refused_by_its_sha256(tmp_path):
    _tiny(tmp_path)
    path = tmp_path / "tiny.safetensors"
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match="SHA-256"):
        load_model(tmp_path, "tiny", "cpu")


def test_missing_weights_name_the_remedy(tmp_path):
    with pytest.raises(WeightsError, match="python -m mre_core train"):
        load_model(tmp_path, "absent", "cpu")


def test_weights_that_do_not_fit_the_architecture_are_refused(tmp_path):
    _tiny(tmp_path)
    record = json.loads((tmp_path / "tiny.json").read_text())
    record["plain_base_channels"] = 16
    (tmp_path / "tiny.json").write_text(json.dumps(record))
    with pytest.raises(WeightsError, match="does not fit"):
        load_model(tmp_path, "tiny", "cpu")


def test_auto_device_is_cuda_only_when_present():
    assert pick_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert pick_device("cpu").type == "cpu"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA error")
def test_asking_for_cuda_without_one_is_a_clear_error():
    with pytest.raises(RuntimeError, match="no CUDA"):
        pick_device("cuda")


@pytest.mark.gpu
def test_model_runs_on_cuda():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    net = build_model(ModelConfig()).cuda().eval()
    with torch.inference_mode():
        assert net(torch.rand(1, 3, 512, 512, device="cuda")).shape == (1, 1, 512, 512)
