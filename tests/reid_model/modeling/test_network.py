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
    from reid_model.modeling.model import ReidModel, total_loss
    from reid_model.modeling.reconstructive_pooling import ReconstructivePooling

    torch.manual_seed(0)
    model = ReidModel(_tiny(), num_classes=4)
    x = torch.randn(8, 3, 64, 32)
    pids = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    out = model.train()(x, pids)
    losses = {k for k in out if k.startswith("loss_")}
    assert losses == {"loss_cls", "loss_metric_global", "loss_metric_rp"} and "me_batch_mean" in out
    for branch in ("global", "rp"):  # BED's operating range, per branch
        for key in ("feat_norm", "d_pos", "d_neg", "bed_pos", "bed_neg"):
            assert torch.isfinite(out[f"range_{branch}_{key}"]), (branch, key)
        torch.testing.assert_close(
            out[f"range_{branch}_bed_pos"] + out[f"range_{branch}_bed_neg"], out[f"loss_metric_{branch}"]
        )
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
    from reid_model.modeling.causal_classifier import CausalNormClassifier
    from reid_model.modeling.circle_softmax import CircleSoftmax
    from reid_model.modeling.dnl import DisentangledNonLocal
    from reid_model.modeling.model import ReidModel
    from reid_model.modeling.nonlocal_block import NonLocal

    x = torch.randn(8, 3, 64, 32)
    pids = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    on = ReidModel(_tiny(), num_classes=4)
    assert isinstance(on.backbone.nonlocal_blocks[1][0], DisentangledNonLocal)
    assert isinstance(on.classifier, CausalNormClassifier) and on.retrieval_feature == "pooled"
    off = ReidModel(_tiny("rp=false", "dnl=false", "bed=false", "me=false"), num_classes=4)
    assert off.rp is None and isinstance(off.backbone.nonlocal_blocks[1][0], NonLocal)
    assert isinstance(off.classifier, CircleSoftmax) and off.retrieval_feature == "bnneck"
    out = off.train()(x, pids)
    assert "loss_metric_rp" not in out and "range_global_bed_pos" not in out  # triplet: no BED parts
    assert torch.isfinite(out["range_global_d_pos"]) and torch.isfinite(out["range_global_d_neg"])
    # the explicit keys override what the switches imply
    assert isinstance(ReidModel(_tiny("model.classifier=circle"), 4).classifier, CircleSoftmax)
    assert ReidModel(_tiny("me=false", "test.feature=pooled"), 4).retrieval_feature == "pooled"
    both = ReidModel(_tiny("model.rp_id_loss=true"), num_classes=4).train()(x, pids)
    assert "loss_cls_rp" in both
    me_off = ReidModel(_tiny("me=false"), num_classes=4)
    me_off.me.mean.fill_(0.5)
    f = torch.randn(3, 128)
    torch.testing.assert_close(me_off.retrieval_features(f), torch.nn.functional.normalize(f, dim=1))
    me_on = ReidModel(_tiny(), num_classes=4)
    me_on.me.mean.fill_(0.5)
    torch.testing.assert_close(me_on.retrieval_features(f), torch.nn.functional.normalize(f, dim=1) - 0.5)


def test_triplet_reads_the_bnneck_output_as_sbs_does():
    from reid_model.losses.triplet_loss import batch_hard_triplet_loss
    from reid_model.modeling.model import ReidModel

    torch.manual_seed(0)
    model = ReidModel(_tiny("bed=false", "rp=false"), num_classes=4).train()
    x = torch.randn(8, 3, 64, 32)
    pids = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    out = model(x, pids)
    neck = model.bnneck.bn  # recompute with the batch statistics the forward used
    with torch.no_grad():
        pooled = model.pool(model.backbone(x))
        b = (pooled - pooled.mean(0)) / torch.sqrt(pooled.var(0, unbiased=False) + neck.eps) * neck.weight
    torch.testing.assert_close(
        out["loss_metric_global"], batch_hard_triplet_loss(b, pids), rtol=1e-4, atol=1e-5
    )
    pooled_cfg = ReidModel(_tiny("bed=false", "rp=false", "loss.triplet_feature=pooled"), 4).train()
    pooled_cfg.load_state_dict(model.state_dict())
    out = pooled_cfg(x, pids)
    torch.testing.assert_close(out["loss_metric_global"], batch_hard_triplet_loss(pooled, pids))


@pytest.mark.slow
def test_sbs_preset_is_the_all_switches_off_model():
    """configs/sbs_r50.yaml and the paper preset with every Table 5 switch off build the same network
    (modules, parameter shapes) and, given the same weights and batch, the same losses."""
    from reid_model.config import classifier_kind, retrieval_feature
    from reid_model.modeling.model import ReidModel

    switches_off = ["cbe=false", "bed=false", "dnl=false", "rp=false", "me=false", "model.pretrained="]
    sbs = load_config("sbs_r50", ["model.pretrained="])
    off = load_config("opreid_r50", switches_off)
    assert (sbs.cbe, sbs.bed, sbs.dnl, sbs.rp, sbs.me) == (False,) * 5
    assert classifier_kind(sbs) == classifier_kind(off) == "circle"
    assert retrieval_feature(sbs) == retrieval_feature(off) == "bnneck"
    assert sbs.model == off.model and sbs.loss.label_smoothing == off.loss.label_smoothing
    assert (
        (sbs.loss.triplet_margin, sbs.loss.triplet_feature)
        == (off.loss.triplet_margin, "bnneck")
        == (0.0, "bnneck")
    )
    assert (sbs.input.height, sbs.input.width, sbs.data.num_instance) == (384, 128, 16)  # FastReID's Base-SBS
    torch.manual_seed(0)
    a = ReidModel(sbs, num_classes=6).train()
    b = ReidModel(off, num_classes=6).train()
    assert str(a) == str(b)
    b.load_state_dict(a.state_dict())
    x = torch.randn(12, 3, 64, 32)
    pids = torch.arange(6).repeat_interleave(2)
    out_a, out_b = a(x, pids), b(x, pids)
    assert {k for k in out_a if k.startswith("loss_")} == {"loss_cls", "loss_metric_global"}
    for key in out_a:
        if key.startswith("loss_"):
            torch.testing.assert_close(out_a[key], out_b[key])


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
    with pytest.raises(ConfigError, match="me: true subtracts its mean from the pooled feature"):
        load_config("tiny", ["test.feature=bnneck"])
    with pytest.raises(ConfigError, match="not one of auto, causal, circle"):
        load_config("tiny", ["model.classifier=arcface"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  widht: [1]\n")
    with pytest.raises(ConfigError, match="did you mean 'model.width"):
        load_config(bad)
    # the resolved config round-trips
    path = tmp_path / "resolved.yaml"
    path.write_text(dump_config(cfg))
    assert load_config(path) == cfg


#: The presets of the paper's experiments: the paper's recipe, identical to opreid_r50 (only their
#: comments differ: which benchmark, and where the data comes from).
BENCHMARK_PRESETS = ("occluded_duke", "occluded_reid_via_market", "market1501", "dukemtmc")


def test_presets_keep_every_component_on():
    for name in ("tiny", "small", "opreid_r50", *BENCHMARK_PRESETS):
        cfg = load_config(name)
        assert cfg.cbe and cfg.bed and cfg.dnl and cfg.rp and cfg.me, name
        assert cfg.model.nl_layers == [0, 2, 3, 0] and cfg.model.last_stride == 1
    for name in ("tiny", "small"):
        cfg = load_config(name)
        assert (cfg.input.height, cfg.input.width, cfg.model.block, cfg.model.pretrained) == (
            128,
            64,
            "basic",
            "",
        )
    paper = load_config("opreid_r50")
    assert paper.loss.bed_normalize and paper.loss.bed_alpha == 0.3 and paper.model.me_beta == 0.9
    for name in BENCHMARK_PRESETS:
        assert load_config(name) == paper, f"{name} drifted from opreid_r50"


def test_pretrained_local_state_dict(tmp_path):
    from reid_model.errors import PretrainedWeightsError
    from reid_model.modeling.pretrained import load_pretrained
    from reid_model.modeling.resnet import ResNet

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


def test_imagenet_is_never_downloaded_unless_allowed(tmp_path, monkeypatch):
    import torchvision.models

    from reid_model.errors import PretrainedWeightsError
    from reid_model.modeling.pretrained import imagenet_cache_path, imagenet_state_dict

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    assert str(imagenet_cache_path()).startswith(str(tmp_path))
    asked = []

    def offline(self, *args, **kwargs):  # stands in for the network: no download is ever attempted here
        asked.append(self)
        raise OSError("network unreachable")

    monkeypatch.setattr(torchvision.models.WeightsEnum, "get_state_dict", offline)
    with pytest.raises(PretrainedWeightsError) as info:
        imagenet_state_dict()
    msg = str(info.value)
    assert not asked, "a download was attempted without --allow-download"
    assert "\n" not in msg and "--pretrained PATH" in msg and "resnet50-0676ba61.pth" in msg
    assert "--allow-download" in msg
    with pytest.raises(PretrainedWeightsError) as info:  # allowed, but offline: still one clear line
        imagenet_state_dict(allow_download=True)
    msg = str(info.value)
    assert len(asked) == 1 and "\n" not in msg and "could not be downloaded (OSError)" in msg
    assert "--pretrained PATH" in msg


@pytest.mark.slow
def test_imagenet_weights_load_from_the_hub_cache(tmp_path, monkeypatch):
    import torchvision

    from reid_model.modeling.pretrained import imagenet_cache_path, load_pretrained
    from reid_model.modeling.resnet import ResNet

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    ref = torchvision.models.resnet50()
    imagenet_cache_path().parent.mkdir(parents=True)
    torch.save(ref.state_dict(), imagenet_cache_path())
    ours = ResNet("bottleneck")
    load_pretrained(ours, "imagenet")
    torch.testing.assert_close(ours.layer4[2].conv3.weight, ref.layer4[2].conv3.weight)


@pytest.mark.slow
def test_r50_preset_forward_backward_cpu():
    from reid_model.modeling.batch_erasing import compound_batch_erasing
    from reid_model.modeling.model import ReidModel, total_loss

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
