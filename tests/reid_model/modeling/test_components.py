"""Unit checks of the reference model's parts against their definitions (docs/model.md §1-§5)."""

from __future__ import annotations

import math

import pytest
import torch

torch.set_num_threads(1)


def test_dnl_block_is_identity_at_init_and_learns():
    from reid_model.modeling.dnl import DisentangledNonLocal

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
    from reid_model.modeling.dnl import DisentangledNonLocal

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
    from reid_model.modeling.resnet import ResNet, nonlocal_positions

    assert nonlocal_positions(4, 2) == [2, 3] and nonlocal_positions(6, 3) == [3, 4, 5]
    assert nonlocal_positions(2, 2) == [0, 1] and nonlocal_positions(3, 0) == []
    net = ResNet("basic", [1, 2, 3, 1], [8, 16, 32, 64], last_stride=1, nl_layers=[0, 2, 3, 0])
    assert [len(b) for b in net.nonlocal_blocks] == [0, 2, 3, 0]
    out = net(torch.randn(2, 3, 64, 32))
    assert out.shape == (2, 64, 4, 2)  # last stride 1: layer4 keeps layer3's 4x2
    two = ResNet("basic", [1, 1, 1, 1], [8, 16, 32, 64], last_stride=2, nl_layers=[0, 0, 0, 0])
    assert two(torch.randn(1, 3, 64, 32)).shape == (1, 64, 2, 1)


@pytest.mark.slow
def test_resnet50_names_match_torchvision():
    import torchvision

    from reid_model.modeling.resnet import ResNet

    ours = ResNet("bottleneck").state_dict()
    theirs = {k: v for k, v in torchvision.models.resnet50().state_dict().items() if not k.startswith("fc.")}
    backbone = {k: v.shape for k, v in ours.items() if not k.startswith("nonlocal_blocks.")}
    assert backbone == {k: v.shape for k, v in theirs.items()}
    assert sum(1 for k in ours if k.startswith("nonlocal_blocks.") and k.endswith("out_bn.weight")) == 5


def test_gem_pooling():
    from reid_model.modeling.gem import GeneralizedMeanPooling

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
    from reid_model.modeling.bnneck import BNNeck

    neck = BNNeck(6)
    assert not neck.bn.bias.requires_grad and torch.equal(neck.bn.bias, torch.zeros(6))
    out = neck(torch.randn(5, 6) * 3 + 2)
    torch.testing.assert_close(out.mean(0), torch.zeros(6), atol=1e-5, rtol=0)


def test_reconstructive_pooling_equals_average_pooling_at_init():
    from reid_model.modeling.reconstructive_pooling import ReconstructivePooling

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
    from reid_model.losses.bed_loss import bed_loss

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


@pytest.mark.parametrize("reduction", ["separate", "all_pairs_mean", "per_anchor", "batch_hard"])
@pytest.mark.parametrize("normalize", [False, True])
def test_bed_parts_add_up_to_the_loss_and_report_the_distances(reduction, normalize):
    from reid_model.losses.bed_loss import bed_loss, bed_terms

    feats, pids = _toy()
    terms = bed_terms(feats, pids, 0.3, reduction, normalize)
    torch.testing.assert_close(terms.loss, bed_loss(feats, pids, 0.3, reduction, normalize))
    pos, neg = _hand_pairs(0.3)
    z = torch.nn.functional.normalize(feats, dim=1) if normalize else feats
    d = torch.cdist(z, z)
    mean = lambda pairs: sum(float(d[i, j]) for i, j in pairs) / len(pairs)  # noqa: E731
    assert terms.d_pos.item() == pytest.approx(mean(pos), rel=1e-4)
    assert terms.d_neg.item() == pytest.approx(mean(neg), rel=1e-4)
    assert 0 <= terms.pos.item() <= 1 and 0 <= terms.neg.item() <= 1
    if normalize:  # unit vectors: BED never sees a distance above 2
        assert terms.d_pos.item() <= 2 and terms.d_neg.item() <= 2


def test_bed_on_raw_resnet_scale_features_passes_almost_no_gradient():
    """The saturation the operating-range log exists to show: at distances of 20-40 exp(-0.3 d) ~ 0."""
    from reid_model.losses.bed_loss import bed_terms

    torch.manual_seed(0)
    base = torch.randn(8, 64)
    pids = torch.arange(4).repeat_interleave(2)
    grads = {}
    for normalize in (False, True):
        f = (base * 4).requires_grad_()  # norms ~32, pairwise distances ~45
        terms = bed_terms(f, pids, 0.3, "separate", normalize)
        (g,) = torch.autograd.grad(terms.neg, f)
        grads[normalize] = g.norm().item()
        if not normalize:
            assert terms.d_neg.item() > 20 and terms.neg.item() < 1e-4
    assert grads[False] < 1e-4 < grads[True]


def test_bed_tends_to_its_bounds():
    from reid_model.losses.bed_loss import bed_loss

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
    from reid_model.losses.bed_loss import bed_loss

    f = torch.zeros(4, 3, requires_grad=True)
    bed_loss(f, torch.tensor([0, 0, 1, 1])).backward()
    assert torch.isfinite(f.grad).all()


def test_triplet_loss_baseline():
    from reid_model.losses.triplet_loss import batch_hard_triplet_loss

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
    from reid_model.modeling.batch_erasing import ErasingParams, compound_batch_erasing, stripe_rows

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
    from reid_model.modeling.batch_erasing import ErasingParams, random_erasing

    x = torch.randn(200, 1, 32, 16) + 5
    out = random_erasing(x, torch.Generator().manual_seed(0), ErasingParams(prob=0.5))
    frac = (out != x).flatten(1).any(1).float().mean().item()
    assert 0.35 < frac < 0.65
    again = random_erasing(x, torch.Generator().manual_seed(0), ErasingParams(prob=0.5))
    assert torch.equal(out, again)
    assert torch.equal(random_erasing(x, torch.Generator().manual_seed(0), ErasingParams(prob=0.0)), x)


def test_causal_classifier_logits_match_the_formula():
    from reid_model.modeling.causal_classifier import CausalNormClassifier

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
    assert float(clf.weight.detach().abs().max()) <= 1 / math.sqrt(8)


def test_classification_loss_modes_and_label_smoothing():
    from reid_model.modeling.causal_classifier import classification_loss, smoothed_cross_entropy

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


def test_circle_softmax_matches_its_formula():
    from reid_model.modeling.circle_softmax import CircleSoftmax

    torch.manual_seed(0)
    layer = CircleSoftmax(6, 4, scale=64.0, margin=0.35)
    assert layer.weight.std().item() == pytest.approx(0.01, rel=0.5)  # FastReID's N(0, 0.01) init
    x, y = torch.randn(3, 6), torch.tensor([2, 0, 3])
    logits = layer(x, y)
    cos = torch.nn.functional.normalize(x, dim=1) @ torch.nn.functional.normalize(layer.weight, dim=1).t()
    for i in range(3):
        for c in range(4):
            s = cos[i, c].item()
            if c == y[i]:
                expected = max(1 + 0.35 - s, 0) * (s - 0.65)
            else:
                expected = max(s + 0.35, 0) * (s - 0.35)
            assert logits[i, c].item() == pytest.approx(64 * expected, rel=1e-4, abs=1e-4)
    logits.sum().backward()  # the re-weighting factors are constants (detached); the cosines learn
    assert layer.weight.grad is not None


def test_fastreid_nonlocal_block_is_identity_at_init_and_matches_its_formula():
    from reid_model.modeling.nonlocal_block import NonLocal

    torch.manual_seed(0)
    # FastReID's width (reduc_ratio // reduc_ratio)
    assert NonLocal(8, reduction=2, inner_channels=1).inner == 1
    block = NonLocal(8, reduction=2)
    assert block.inner == 4  # C / 2, the width FastReID's code intends
    x = torch.randn(2, 8, 3, 2)
    assert torch.equal(block.train()(x), x) and torch.equal(block.eval()(x), x)
    torch.nn.init.ones_(block.out_bn.weight)
    f = x[0].flatten(1)  # C x L
    conv = lambda m, t: m.weight.flatten(1) @ t + m.bias[:, None]  # noqa: E731
    q, k, v = conv(block.query, f), conv(block.key, f), conv(block.value, f)
    y = v @ (q.t() @ k / f.shape[1]).t()  # dot product over L, no softmax
    z = conv(block.out, y).view(1, 8, 3, 2)
    bn = block.out_bn
    expected = x[:1] + (z - bn.running_mean.view(1, -1, 1, 1)) / torch.sqrt(
        bn.running_var.view(1, -1, 1, 1) + bn.eps
    )
    torch.testing.assert_close(block.eval()(x)[:1], expected, rtol=1e-4, atol=1e-5)


def test_momentum_mean_update_is_eq6():
    from reid_model.modeling.momentum_mean import MomentumMean

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


def _ranks(query: torch.Tensor, gallery: torch.Tensor) -> torch.Tensor:
    from reid_model.engine.extract import distance_matrix

    return torch.from_numpy(distance_matrix(query, gallery, "cosine").numpy().argsort(1, kind="stable"))


def test_me_moves_rankings_when_training_identities_are_imbalanced():
    """A head identity dominates training, so every feature leans towards its direction h. A query
    of a tail identity (direction a) then ranks a head-leaning image of another person above its own
    match; subtracting the momentum mean, which the imbalanced stream has pulled towards h, restores it."""
    from reid_model.modeling.momentum_mean import MomentumMean

    e = torch.eye(6)
    h, a, b = e[0], e[1], e[2]
    me = MomentumMean(6, beta=0.9)
    gen = torch.Generator().manual_seed(0)
    for _ in range(60):  # 30 head images per batch, 2 of each of two tail identities
        head = h + 0.1 * torch.randn(30, 6, generator=gen)
        tails = torch.stack([a, a, b, b]) + 0.1 * torch.randn(4, 6, generator=gen)
        me.update(me.batch_mean(torch.cat([head, tails])))
    assert torch.nn.functional.cosine_similarity(me.mean, h, dim=0) > 0.95
    query = (a + 2 * h).unsqueeze(0)
    gallery = torch.stack(
        [a + 0.3 * h, b + 2 * h]
    )  # 0: the query's identity, 1: another person, head-leaning
    plain = torch.nn.functional.normalize
    assert _ranks(plain(query, dim=1), plain(gallery, dim=1))[0].tolist() == [1, 0]  # wrong without ME
    assert _ranks(me.subtract(query), me.subtract(gallery))[0].tolist() == [0, 1]  # right with it
    balanced = MomentumMean(6, beta=0.9)
    balanced.update(balanced.batch_mean(torch.cat([e, -e])))  # a stream with zero mean: mu = 0
    assert torch.equal(balanced.mean, torch.zeros(6))


def test_me_is_one_feature_space_and_leaves_rankings_alone_when_mu_is_zero():
    """ME tracks normalize(GeM output) in training and subtracts it from that same feature at
    inference; with mu = 0 the retrieval features are exactly normalize(GeM output)."""
    from reid_model.config import load_config
    from reid_model.modeling.model import ReidModel

    torch.manual_seed(0)
    model = ReidModel(load_config("tiny", ["input.height=64", "input.width=32"]), num_classes=4)
    x = torch.randn(8, 3, 64, 32)
    pids = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    model.train()
    with torch.no_grad():
        pooled_train = model.pool(model.backbone(x))
        out = model(x, pids)
    expected = torch.nn.functional.normalize(pooled_train, dim=1).mean(0)
    torch.testing.assert_close(out["me_batch_mean"], expected)
    assert out["me_batch_mean"].norm() > 0.5  # the GeM output is not centred: mu is far from 0
    model.eval()
    with torch.no_grad():
        base = model(x)
        torch.testing.assert_close(base, model.pool(model.backbone(x)))  # eval returns the GeM output
        assert torch.equal(model.me.mean, torch.zeros(model.dim))
        zero_mu = model.retrieval_features(base)
        assert torch.equal(zero_mu, torch.nn.functional.normalize(base, dim=1))
        q, g = zero_mu[:3], zero_mu[3:]
        assert torch.equal(_ranks(q, g), _ranks(torch.nn.functional.normalize(base[:3], dim=1),
                                                torch.nn.functional.normalize(base[3:], dim=1)))  # fmt: skip
        model.me.update(out["me_batch_mean"])
        moved = model.retrieval_features(base)
        torch.testing.assert_close(moved, zero_mu - model.me.mean)


def test_lr_schedule_warmup_delay_cosine():
    from reid_model.config import SolverConfig
    from reid_model.engine.lr_schedule import lr_factor_fn

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
    """extract's distances are computed by benchmarks.metrics.distances (numpy backend)."""
    import numpy as np

    from benchmarks.metrics.distances import METRICS, feature_distances
    from reid_model.engine import extract

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
