"""ProtAlbert presets: plain data, the keyword arguments of :class:`models.networks.encoder_backbone.EncoderBackbone`.

`paper` is the published ProtAlbert (Rostlab `prot_albert` config: 12 layers sharing one set of weights,
hidden 4096, 64 heads, FFN 16384, embedding 128, 40,000 positions, no dropout), with our vocabulary.
"""

_SHARED = {"share_layers": True}

PRESETS = {
    "tiny": {
        **_SHARED, "num_layers": 3, "hidden_dim": 32, "num_heads": 2, "intermediate_dim": 64, "embedding_dim": 16,
        "max_sequence_length": 1026,
    },
    "small": {
        **_SHARED, "num_layers": 6, "hidden_dim": 256, "num_heads": 4, "intermediate_dim": 1024,
        "embedding_dim": 64, "max_sequence_length": 2050, "dropout": 0.1, "attention_dropout": 0.1,
    },
    "paper": {
        **_SHARED, "num_layers": 12, "hidden_dim": 4096, "num_heads": 64, "intermediate_dim": 16384,
        "embedding_dim": 128, "max_sequence_length": 40000,
    },
}
