"""The choice lists of the model's config keys, free of torch.

The config checks a preset against these before torch loads (a typo is reported in milliseconds),
and the components that implement each choice read the same tuples, so a choice is added in one
place.
"""

from __future__ import annotations

#: model.block: residual block -> channel expansion of its output.
BLOCK_EXPANSION: dict[str, int] = {"bottleneck": 4, "basic": 1}
#: model.rp_init: how reconstructive pooling's 1x1 convolution starts.
RP_INITS = ("identity", "normal")
#: model.classifier: `auto` follows the `bed` switch (config.classifier_kind).
CLASSIFIERS = ("auto", "causal", "circle")
#: loss.triplet_feature: the two global features, the GeM output and the BNNeck output.
FEATURES = ("pooled", "bnneck")
#: test.feature: retrieval features; `auto` follows the `me` switch (config.retrieval_feature).
RETRIEVAL_FEATURES = ("auto", *FEATURES)
#: input.re_fill: mean is 0 in normalised space (the ImageNet mean pixel); random is N(0, 1).
ERASE_FILLS = ("mean", "random")
#: loss.bed_reduction: how BED's pair terms are averaged.
BED_REDUCTIONS = ("separate", "all_pairs_mean", "per_anchor", "batch_hard")
#: loss.cls_head_loss: the causal classifier's loss over its heads.
HEAD_LOSSES = ("sum_logits", "per_head")
#: loader.pipeline: how training crops reach the model (docs/model.md §6.4).
PIPELINES = ("tensor", "pil")
#: train.amp_dtype: the autocast dtype of mixed precision on CUDA (bfloat16 needs no loss scaling).
AMP_DTYPES = ("float16", "bfloat16")
