"""ProtBert presets: plain data, the keyword arguments of :class:`models.networks.encoder_backbone.EncoderBackbone`.

`paper` is the published ProtBert (Rostlab `prot_bert` config: 30 layers, hidden 1024, 16 heads, FFN 4096,
40,000 positions, no dropout), with our vocabulary. `tiny` is for tests, `small` for a laptop, `base` (BERT-base
shape) for one GPU.
"""

PRESETS = {
    "tiny": {
        "num_layers": 2, "hidden_dim": 32, "num_heads": 2, "intermediate_dim": 64, "max_sequence_length": 1026,
    },
    "small": {
        "num_layers": 4, "hidden_dim": 256, "num_heads": 4, "intermediate_dim": 1024, "max_sequence_length": 2050,
        "dropout": 0.1, "attention_dropout": 0.1,
    },
    "base": {
        "num_layers": 12, "hidden_dim": 768, "num_heads": 12, "intermediate_dim": 3072, "max_sequence_length": 2050,
    },
    "paper": {
        "num_layers": 30, "hidden_dim": 1024, "num_heads": 16, "intermediate_dim": 4096,
        "max_sequence_length": 40000,
    },
}
