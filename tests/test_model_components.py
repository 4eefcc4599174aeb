"""Unit checks of the reference model's parts against their definitions (docs/model.md §1-§5)."""

from __future__ import annotations

import math

import pytest
import torch

torch.set_num_threads(1)


def test_dnl_block_is_identity_at_init_and_learns():
    from reid_model.dnl import DisentangledNonLocal

    torch.manual_seed(0)
    block = DisentangledNonLocal(16, reduction=2).train()
    x = torch.randn(3, 16, 8, 4)
    assert torch.equal(block(x), x)
    block.eval()
    assert torch.equal(block(x), x)
    # once the output BN is non-zero the block is not the identity, and gradients reach the embeddings
    torch.nn.init.ones_(block.out_bn.weight)
    y = block.train()(x)
    assert not torch.allclose(y, x)
    y.pow(2).sum().backward()
    assert block.query.weight.grad.abs().sum() > 0 and block.mask.weight.grad.abs().sum() > 0


def test_dnl_matches_its_formula():
    from reid_model.dnl import DisentangledNonLocal

    torch.manual_seed(1)
    c, cp = 8, 4
    block = DisentangledNonLocal(c, reduction=2, temperature=0.5).eval()
    for p in block.parameters():
        torch.nn.init.normal_(p, 0, 0.3)
    x = torch.randn(1, c, 3, 2)
    f = x[0].flatten(1)  # C x L
    conv = lambda m, t: m.weight.flatten(1) @ t + (m.bias[:, None] if m.bias is not None else 0)  # noqa: E731
    q, k, v = conv(block.query, f), conv(block.key, f), conv(block.value, f)
    q = q - q.mean(1, keepdim=True)
    k = k - k.mean(1, keepdim=True)
    pair = torch.softmax(q.t() @ k / math.sqrt(cp) / 0.5, dim=1)  # L x L, rows = query positions
    unary = torch.softmax(conv(block.mask, f)[0], dim=0)  # L
    y = v @ pair.t() + (v @ unary)[:, None]
    z = conv(block.out, y).view(1, c, 3, 2)
    bn = block.out_bn
    expected = (
        x
        + (z - bn.running_mean.view(1, -1, 1, 1))
        / torch.sqrt(bn.running_var.view(1, -1, 1, 1) + bn.eps)
        * bn.weight.view(1, -1, 1, 1)
        + bn.bias.view(1, -1, 1, 1)
    )
    torch.testing.assert_close(block(x), expected, rtol=1e-4, atol=1e-5)


def test_resnet_places_nonlocal_blocks_after_the_last_blocks():
    from reid_model.resnet import ResNet, nonlocal_positions

    assert nonlocal_positions(4, 2) == [2, 3] and nonlocal_positions(6, 3) == [3, 4, 5]
    assert nonlocal_positions(2, 2) == [0, 1] and nonlocal_positions(3, 0) == []
    net = ResNet("basic", [1, 2, 3, 1], [8, 16, 32, 64], last_stride=1, nl_layers=[0, 2, 3, 0])
    assert [len(b) for b in net.nonlocal_blocks] == [0, 2, 3, 0]
    out = net(torch.randn(2, 3, 64, 32))
    assert out.shape == (2, 64, 4, 2)  # last stride 1: layer4 keeps layer3's 4x2
    two = ResNet("basic", [1, 1, 1, 1], [8, 16, 32, 64], last_stride=2, nl_layers=[0, 0, 0, 0])
    assert two(torch.randn(1, 3, 64, 32)).shape == (1, 64, 2, 1)


def test_resnet50_names_match_torchvision():
    import torchvision

    from reid_model.resnet import ResNet

    ours = ResNet("bottleneck").state_dict()
    theirs = {k: v for k, v in torchvision.models.resnet50().state_dict().items() if not k.startswith("fc.")}
    backbone = {k: v.shape for k, v in ours.items() if not k.startswith("nonlocal_blocks.")}
    assert backbone == {k: v.shape for k, v in theirs.items()}
    assert sum(1 for k in ours if k.startswith("nonlocal_blocks.") and k.endswith("out_bn.weight")) == 5


def test_gem_pooling():
    from reid_model.gem import GeneralizedMeanPooling

    x = torch.rand(2, 3, 4, 5) + 0.1
    gem = GeneralizedMeanPooling(p=3.0)
    torch.testing.assert_close(gem(x), x.pow(3).mean((2, 3)).pow(1 / 3))
    torch.testing.assert_close(GeneralizedMeanPooling(p=1.0)(x), x.mean((2, 3)))
    assert isinstance(gem.p, torch.nn.Parameter)
    fixed = GeneralizedMeanPooling(p=3.0, learnable=False)
    assert not any(True for _ in fixed.parameters())
    gem(x).sum().backward()
    assert gem.p.grad is not None


def test_bnneck_bias_is_frozen_at_zero():
    from reid_model.bnneck import BNNeck

    neck = BNNeck(6)
    assert not neck.bn.bias.requires_grad and torch.equal(neck.bn.bias, torch.zeros(6))
    out = neck(torch.randn(5, 6) * 3 + 2)
    torch.testing.assert_close(out.mean(0), torch.zeros(6), atol=1e-5, rtol=0)


def test_reconstructive_pooling_equals_average_pooling_at_init():
    from reid_model.reconstructive_pooling import ReconstructivePooling

    rp = ReconstructivePooling(12)
    x = torch.randn(3, 12, 4, 2)
    torch.testing.assert_close(rp(x), x.mean((2, 3)), rtol=1e-5, atol=1e-6)
    # the formula with learnt weights: (W^v F) softmax(W^m F)^T
    torch.nn.init.normal_(rp.mask.weight)
    torch.nn.init.normal_(rp.value.weight)
    f = x.flatten(2)
    a = torch.softmax(
        torch.einsum("oc,ncl->nol", rp.mask.weight.flatten(1), f) + rp.mask.bias.view(1, 1, 1), dim=-1
    )
    v = torch.einsum("oc,ncl->nol", rp.value.weight.flatten(1), f)
    torch.testing.assert_close(rp(x), (v * a).sum(-1), rtol=1e-4, atol=1e-5)
    assert ReconstructivePooling(12, init="normal")(x).abs().mean() < 0.2 * x.abs().mean()


def _toy():
    feats = torch.tensor([[0.0, 0.0], [3.0, 4.0], [0.0, 1.0], [6.0, 8.0]])
    pids = torch.tensor([0, 0, 1, 1])
    return feats, pids


def _hand_pairs(alpha):
    f, p = _toy()
    pos, neg = {}, {}
    for i in range(4):
        for j in range(4):
            if i == j:
                continue
            d = float(torch.dist(f[i], f[j]))
            (pos if p[i] == p[j] else neg)[(i, j)] = d
    return pos, neg


@pytest.mark.parametrize("reduction", ["separate", "all_pairs_mean", "per_anchor", "batch_hard"])
def test_bed_matches_hand_computation(reduction):
    from reid_model.bed_loss import bed_loss

    alpha = 0.3
    pos, neg = _hand_pairs(alpha)
    lp = {k: 1 - math.exp(-alpha * d) for k, d in pos.items()}
    ln = {k: math.exp(-alpha * d) for k, d in neg.items()}
    if reduction == "separate":
        expected = sum(lp.values()) / len(lp) + sum(ln.values()) / len(ln)
    elif reduction == "all_pairs_mean":
        expected = (sum(lp.values()) + sum(ln.values())) / (len(lp) + len(ln))
    elif reduction == "per_anchor":
        expected = 0.0
        for i in range(4):
            p = [v for (a, _), v in lp.items() if a == i]
            n = [v for (a, _), v in ln.items() if a == i]
            expected += sum(p) / len(p) + sum(n) / len(n)
        expected /= 4
    else:
        hp = [math.exp(-alpha * max(d for (a, _), d in pos.items() if a == i)) for i in range(4)]
        hn = [math.exp(-alpha * min(d for (a, _), d in neg.items() if a == i)) for i in range(4)]
        expected = (1 - sum(hp) / 4) + sum(hn) / 4
    feats, pids = _toy()
    got = bed_loss(feats, pids, alpha=alpha, reduction=reduction)
    assert got.item() == pytest.approx(expected, rel=1e-5)


def test_bed_tends_to_its_bounds():
    from reid_model.bed_loss import bed_loss

    pids = torch.tensor([0, 1])
    far = torch.tensor([[0.0, 0.0], [1e4, 0.0]])
    near = torch.tensor([[0.0, 0.0], [0.0, 0.0]])
    # negatives: loss -> 0 as d -> inf, 1 at d = 0
    assert bed_loss(far, pids).item() == pytest.approx(0.0, abs=1e-6)
    assert bed_loss(near, pids).item() == pytest.approx(1.0, abs=1e-5)
    same = torch.tensor([0, 0])
    # positives: loss -> 1 as d -> inf, 0 at d = 0
    assert bed_loss(far, same).item() == pytest.approx(1.0, abs=1e-6)
    assert bed_loss(near, same).item() == pytest.approx(0.0, abs=1e-5)
    # bounded: even absurd distances never exceed 2 (one term each)
    huge = torch.randn(8, 4) * 1e6
    assert 0 <= bed_loss(huge, torch.arange(8) % 2).item() <= 2


def test_bed_gradient_is_finite_for_identical_features():
    from reid_model.bed_loss import bed_loss

    f = torch.zeros(4, 3, requires_grad=True)
    bed_loss(f, torch.tensor([0, 0, 1, 1])).backward()
    assert torch.isfinite(f.grad).all()


def test_triplet_loss_baseline():
    from reid_model.triplet_loss import batch_hard_triplet_loss

    feats, pids = _toy()
    d = torch.cdist(feats, feats)
    d23 = math.sqrt(6**2 + 7**2)
    ap = torch.tensor([5.0, 5.0, d23, d23])
    an = torch.tensor(
        [1.0, torch.dist(feats[1], feats[2]).item(), 1.0, torch.dist(feats[3], feats[1]).item()]
    )
    assert d[0, 1] == 5
    expected = torch.nn.functional.softplus(ap - an).mean()
    torch.testing.assert_close(batch_hard_triplet_loss(feats, pids), expected)
    torch.testing.assert_close(
        batch_hard_triplet_loss(feats, pids, margin=0.3), torch.relu(ap - an + 0.3).mean()
    )


def test_compound_batch_erasing():
    from reid_model.batch_erasing import ErasingParams, compound_batch_erasing, stripe_rows

    x = torch.randn(6, 3, 128, 64) + 10.0  # nothing equals the fill value 0 by chance
    pids, cams = torch.arange(6), torch.arange(6) + 10
    seen = set()
    for seed in range(40):
        gen = torch.Generator().manual_seed(seed)
        out, p2, c2 = compound_batch_erasing(x, pids, cams, gen, ErasingParams(prob=0.5))
        assert out.shape == (12, 3, 128, 64)
        assert torch.equal(p2, torch.cat([pids, pids])) and torch.equal(c2, torch.cat([cams, cams]))
        re_half, bce_half = out[:6], out[6:]
        erased_rows = (bce_half == 0).all(dim=(1, 3))  # B x H: rows fully at the fill value
        assert (erased_rows == erased_rows[0]).all()  # the stripe is identical across the BcE half
        rows = torch.nonzero(erased_rows[0]).flatten()
        top, bottom = int(rows.min()), int(rows.max()) + 1
        assert len(rows) == bottom - top
        matches = [(s, t) for s in (6, 7, 8) for t in range(s) if stripe_rows(128, s, t) == (top, bottom)]
        assert matches, (top, bottom)
        seen.update(s for s, _ in matches)
        keep = torch.ones(128, dtype=torch.bool)
        keep[top:bottom] = False
        assert torch.equal(bce_half[:, :, keep], x[:, :, keep])  # nothing else erased
        assert not (re_half == 0).all(dim=(1, 3)).any()  # no full-width stripe in the RE half
        for i in range(6):  # RE: each image is either untouched or has one erased rectangle
            changed = re_half[i] != x[i]
            if changed.any():
                assert (re_half[i][changed] == 0).all()
                area = changed[0].sum().item() / (128 * 64)
                assert 0.015 <= area <= 0.41
    assert seen == {6, 7, 8}


def test_random_erasing_probability_and_determinism():
    from reid_model.batch_erasing import ErasingParams, random_erasing

    x = torch.randn(200, 1, 32, 16) + 5
    out = random_erasing(x, torch.Generator().manual_seed(0), ErasingParams(prob=0.5))
    frac = (out != x).flatten(1).any(1).float().mean().item()
    assert 0.35 < frac < 0.65
    again = random_erasing(x, torch.Generator().manual_seed(0), ErasingParams(prob=0.5))
    assert torch.equal(out, again)
    assert torch.equal(random_erasing(x, torch.Generator().manual_seed(0), ErasingParams(prob=0.0)), x)


def test_causal_classifier_logits_match_the_formula():
    from reid_model.causal_classifier import CausalNormClassifier

    torch.manual_seed(0)
    clf = CausalNormClassifier(8, 5, heads=2, tau=16.0, gamma=1 / 32)
    x = torch.randn(3, 8)
    logits = clf(x)
    assert logits.shape == (2, 3, 5)
    for h in range(2):
        xh, wh = x[:, 4 * h : 4 * h + 4], clf.weight.detach()[:, 4 * h : 4 * h + 4]
        for n in range(3):
            for c in range(5):
                ref = 8.0 * float(xh[n] @ wh[c]) / (float(xh[n].norm()) * (float(wh[c].norm()) + 1 / 32))
                assert logits[h, n, c].item() == pytest.approx(ref, rel=1e-5, abs=1e-6)
    assert float(clf.weight.abs().max()) <= 1 / math.sqrt(8)


def test_classification_loss_modes_and_label_smoothing():
    from reid_model.causal_classifier import classification_loss, smoothed_cross_entropy

    logits = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 3.0]])
    y = torch.tensor([0, 2])
    eps = 0.1
    logp = torch.log_softmax(logits, 1)
    t = torch.full((2, 3), eps / 2)
    t[0, 0] = t[1, 2] = 1 - eps
    expected = -(t * logp).sum(1).mean()
    torch.testing.assert_close(smoothed_cross_entropy(logits, y, eps), expected)
    torch.testing.assert_close(
        smoothed_cross_entropy(logits, y, 0.0), torch.nn.functional.cross_entropy(logits, y)
    )
    heads = torch.stack([logits, logits * 0.5])
    torch.testing.assert_close(
        classification_loss(heads, y, "sum_logits", 0.0), torch.nn.functional.cross_entropy(logits * 1.5, y)
    )
    per = torch.nn.functional.cross_entropy(2 * logits, y) + torch.nn.functional.cross_entropy(logits, y)
    torch.testing.assert_close(classification_loss(heads, y, "per_head", 0.0), per)


def test_momentum_mean_update_is_eq6():
    from reid_model.momentum_mean import MomentumMean

    me = MomentumMean(4, beta=0.9)
    assert torch.equal(me.mean, torch.zeros(4))
    f1, f2 = torch.randn(6, 4), torch.randn(6, 4)
    m1 = torch.nn.functional.normalize(f1, dim=1).mean(0)
    m2 = torch.nn.functional.normalize(f2, dim=1).mean(0)
    me.update(me.batch_mean(f1))
    torch.testing.assert_close(me.mean, 0.1 * m1)
    me.update(me.batch_mean(f2))
    torch.testing.assert_close(me.mean, 0.9 * 0.1 * m1 + 0.1 * m2)
    q = torch.randn(3, 4)
    torch.testing.assert_close(me.subtract(q), torch.nn.functional.normalize(q, dim=1) - me.mean)
    assert "mean" in me.state_dict()


def test_lr_schedule_warmup_delay_cosine():
    from reid_model.config import SolverConfig
    from reid_model.lr_schedule import lr_factor_fn

    s = SolverConfig(
        base_lr=1.0, warmup_iters=10, warmup_factor=0.1, max_epochs=10, delay_epochs=4, eta_min=0.01
    )
    f = lr_factor_fn(s, iters_per_epoch=5)
    assert f(0) == pytest.approx(0.1) and f(5) == pytest.approx(0.55) and f(10) == 1.0
    assert f(19) == 1.0  # epoch 3 < delay 4
    assert f(20) == pytest.approx(1.0)  # cosine starts at its maximum
    assert f(35) == pytest.approx(0.01 + 0.99 * (1 + math.cos(math.pi * 3 / 6)) / 2)
    values = [f(i) for i in range(20, 50)]
    assert all(a >= b for a, b in zip(values, values[1:], strict=False)) and values[-1] > 0.01


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_extract_distances_are_the_scorers_feature_distances(metric):
    """extract's distances are computed by benchmarks.feature_distances (numpy backend)."""
    import numpy as np

    from benchmarks.feature_distances import METRICS, feature_distances
    from reid_model import extract

    assert extract.METRICS is METRICS
    gen = torch.Generator().manual_seed(0)
    q, g = torch.randn(9, 48, generator=gen), torch.randn(31, 48, generator=gen)
    ours = extract.distance_matrix(q, g, metric).numpy()
    src = feature_distances(q.numpy(), g.numpy(), metric, backend="numpy")
    block = src.rows(0, src.num_query).astype(np.float64)
    theirs = 1.0 - block if src.similarity else block
    assert ours.dtype == np.float32
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-5)
    if metric == "cosine":
        np.testing.assert_array_equal(ours, np.float32(1.0) - src.rows(0, src.num_query))
    assert (
        np.argsort(ours, axis=1, kind="stable")[:, :5] == np.argsort(theirs, axis=1, kind="stable")[:, :5]
    ).all()
