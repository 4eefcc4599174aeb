"""The assembled model: train mode returns the loss terms, eval mode N x D features without RP;
config loading and overrides; pretrained-weight handling; the R50 preset runs forward+backward."""

from __future__ import annotations

import pytest
import torch

from reid_model.config import load_config

torch.set_num_threads(1)


def _tiny(*overrides):
    return load_config("tiny", ["input.height=64", "input.width=32", *overrides])


def test_train_mode_returns_loss_terms_and_eval_mode_features(monkeypatch):
    from reid_model.model import ReidModel, total_loss
    from reid_model.reconstructive_pooling import ReconstructivePooling

    torch.manual_seed(0)
    model = ReidModel(_tiny(), num_classes=4)
    x = torch.randn(8, 3, 64, 32)
    pids = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    out = model.train()(x, pids)
    assert set(out) == {"loss_cls", "loss_metric_global", "loss_metric_rp", "me_batch_mean"}
    loss = total_loss(out)
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    assert model.rp.value.weight.grad is not None and model.classifier.weight.grad is not None
    assert out["me_batch_mean"].shape == (128,) and not out["me_batch_mean"].requires_grad

    def boom(*args, **kwargs):
        raise AssertionError("reconstructive pooling must not run at inference")

    monkeypatch.setattr(ReconstructivePooling, "forward", boom)
    model.eval()
    with torch.no_grad():
        feats = model(x)
    assert feats.shape == (8, 128)
    with pytest.raises(ValueError):
        model.train()(x)


def test_ablation_switches_change_the_graph():
    from reid_model.model import ReidModel

    x = torch.randn(8, 3, 64, 32)
    pids = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    off = ReidModel(_tiny("rp=false", "dnl=false", "bed=false"), num_classes=4)
    assert off.rp is None
    nl = off.backbone.nonlocal_blocks[1][0]
    assert nl.mask is None and not nl.whiten
    out = off.train()(x, pids)
    assert "loss_metric_rp" not in out
    both = ReidModel(_tiny("model.rp_id_loss=true"), num_classes=4).train()(x, pids)
    assert "loss_cls_rp" in both
    me_off = ReidModel(_tiny("me=false"), num_classes=4)
    me_off.me.mean.fill_(0.5)
    f = torch.randn(3, 128)
    torch.testing.assert_close(me_off.retrieval_features(f), torch.nn.functional.normalize(f, dim=1))
    me_on = ReidModel(_tiny(), num_classes=4)
    me_on.me.mean.fill_(0.5)
    torch.testing.assert_close(me_on.retrieval_features(f), torch.nn.functional.normalize(f, dim=1) - 0.5)


def test_config_overrides_and_errors(tmp_path):
    from reid_model.config import dump_config, load_config, parse_overrides
    from reid_model.errors import ConfigError

    cfg = load_config("opreid_r50", ["cbe=false", "solver.base_lr=1e-3", "model.layers=[2,3,3,2]"])
    assert cfg.cbe is False and cfg.solver.base_lr == 1e-3 and cfg.model.layers == [2, 3, 3, 2]
    assert cfg.model.pretrained == "imagenet" and cfg.data.ims_per_batch == 64
    with pytest.raises(ConfigError, match="did you mean 'solver.max_epochs'"):
        load_config("tiny", ["solver.max_epoch=3"])
    with pytest.raises(ConfigError, match="did you mean 'tiny'"):
        load_config("tinyy")
    with pytest.raises(ConfigError, match="expected an integer"):
        load_config("tiny", ["solver.max_epochs=three"])
    with pytest.raises(ConfigError, match="not one of"):
        load_config("tiny", ["loss.bed_reduction=median"])
    with pytest.raises(ConfigError, match="key=value"):
        parse_overrides(["cbe"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  widht: [1]\n")
    with pytest.raises(ConfigError, match="did you mean 'model.width"):
        load_config(bad)
    # the resolved config round-trips
    path = tmp_path / "resolved.yaml"
    path.write_text(dump_config(cfg))
    assert load_config(path) == cfg


def test_presets_keep_every_component_on():
    for name in ("tiny", "opreid_r50"):
        cfg = load_config(name)
        assert cfg.cbe and cfg.bed and cfg.dnl and cfg.rp and cfg.me, name
        assert cfg.model.nl_layers == [0, 2, 3, 0] and cfg.model.last_stride == 1
    assert load_config("tiny").input.height == 128 and load_config("tiny").input.width == 64


def test_pretrained_local_state_dict(tmp_path):
    from reid_model.errors import PretrainedWeightsError
    from reid_model.pretrained import load_pretrained
    from reid_model.resnet import ResNet

    src = ResNet("basic", [1, 1, 1, 1], [8, 8, 16, 16], nl_layers=[0, 1, 1, 0])
    for p in src.parameters():
        torch.nn.init.normal_(p)
    state = {k: v for k, v in src.state_dict().items() if not k.startswith("nonlocal_blocks.")}
    path = tmp_path / "w.pt"
    torch.save(state, path)
    dst = ResNet("basic", [1, 1, 1, 1], [8, 8, 16, 16], nl_layers=[0, 1, 1, 0])
    load_pretrained(dst, str(path))
    torch.testing.assert_close(dst.layer3[0].conv1.weight, src.layer3[0].conv1.weight)
    x = torch.randn(1, 16, 4, 2)
    assert torch.equal(dst.nonlocal_blocks[2][0](x), x)  # non-local blocks keep their identity init
    with pytest.raises(PretrainedWeightsError, match="not found"):
        load_pretrained(dst, str(tmp_path / "missing.pt"))
    other = ResNet("basic", [1, 1, 1, 1], [8, 8, 16, 32], nl_layers=[0, 0, 0, 0])
    with pytest.raises(PretrainedWeightsError, match="do not fit"):
        load_pretrained(other, str(path))


def test_imagenet_offline_fails_with_one_clear_message(tmp_path, monkeypatch):
    import torchvision.models

    from reid_model.errors import PretrainedWeightsError
    from reid_model.pretrained import imagenet_cache_path, imagenet_state_dict

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    assert str(imagenet_cache_path()).startswith(str(tmp_path))

    def offline(self, *args, **kwargs):  # stands in for the network: no download is ever attempted here
        raise OSError("network unreachable")

    monkeypatch.setattr(torchvision.models.WeightsEnum, "get_state_dict", offline)
    with pytest.raises(PretrainedWeightsError) as info:
        imagenet_state_dict()
    msg = str(info.value)
    assert "\n" not in msg and "--pretrained PATH" in msg and "resnet50-0676ba61.pth" in msg


@pytest.mark.slow
def test_imagenet_weights_load_from_the_hub_cache(tmp_path, monkeypatch):
    import torchvision

    from reid_model.pretrained import imagenet_cache_path, load_pretrained
    from reid_model.resnet import ResNet

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    ref = torchvision.models.resnet50()
    imagenet_cache_path().parent.mkdir(parents=True)
    torch.save(ref.state_dict(), imagenet_cache_path())
    ours = ResNet("bottleneck")
    load_pretrained(ours, "imagenet")
    torch.testing.assert_close(ours.layer4[2].conv3.weight, ref.layer4[2].conv3.weight)


@pytest.mark.slow
def test_r50_preset_forward_backward_cpu():
    from reid_model.batch_erasing import compound_batch_erasing
    from reid_model.model import ReidModel, total_loss

    torch.manual_seed(0)
    cfg = load_config("opreid_r50", ["model.pretrained="])
    model = ReidModel(cfg, num_classes=10).train()
    x = torch.randn(2, 3, 256, 128)
    xs, pids, _ = compound_batch_erasing(
        x, torch.tensor([0, 1]), torch.tensor([0, 1]), torch.Generator().manual_seed(0)
    )
    out = model(xs, pids)
    loss = total_loss(out)
    loss.backward()
    assert torch.isfinite(loss)
    assert model.backbone.nonlocal_blocks[2][2].query.weight.grad is not None
    fmap = model.backbone(x[:1])
    assert fmap.shape == (1, 2048, 16, 8)
    model.eval()
    with torch.no_grad():
        assert model(x).shape == (2, 2048)
