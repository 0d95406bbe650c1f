"""ProtXLNet presets: plain data, the keyword arguments of :class:`models.protxlnet.backbone.XLNetBackbone`.

`paper` is the published ProtXLNet shape (30 layers, hidden 1024, 16 heads, FFN 4096; the paper trained it on
segments of 512 with a memory of 384). `max_sequence_length` is only the longest input the embedding API
accepts: relative positions have no table.
"""

PRESETS = {
    "tiny": {"num_layers": 2, "hidden_dim": 32, "num_heads": 4, "intermediate_dim": 64, "memory_length": 32,
             "max_sequence_length": 1026},
    "small": {"num_layers": 4, "hidden_dim": 256, "num_heads": 4, "intermediate_dim": 1024, "memory_length": 256,
              "max_sequence_length": 4098},
    "paper": {"num_layers": 30, "hidden_dim": 1024, "num_heads": 16, "intermediate_dim": 4096, "memory_length": 384,
              "max_sequence_length": 40000},
}
