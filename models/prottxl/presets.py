"""ProtTXL presets: plain data, the keyword arguments of :class:`models.prottxl.backbone.TransformerXLBackbone`.

`paper` is the published ProtTXL shape (32 layers, hidden 1024, 14 heads of 128, FFN 8192, segments of 512
with a memory of 512). `max_sequence_length` is only the longest input the embedding API accepts.
"""

PRESETS = {
    "tiny": {"num_layers": 2, "hidden_dim": 32, "num_heads": 4, "head_dim": 8, "intermediate_dim": 64,
             "memory_length": 32, "max_sequence_length": 1026},
    "small": {"num_layers": 4, "hidden_dim": 256, "num_heads": 4, "head_dim": 64, "intermediate_dim": 1024,
              "memory_length": 256, "max_sequence_length": 4098},
    "paper": {"num_layers": 32, "hidden_dim": 1024, "num_heads": 14, "head_dim": 128, "intermediate_dim": 8192,
              "memory_length": 512, "max_sequence_length": 40000},
}
