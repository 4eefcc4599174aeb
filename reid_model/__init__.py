"""The paper's reference model: ResNet-50 + DNL, GeM/BNNeck, RP, CBE, BED loss, causal classifier, ME."""
