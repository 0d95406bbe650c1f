"""ProtT5 presets: plain data, the keyword arguments of :class:`models.prott5.backbone.T5EncoderBackbone` (the
decoder of the pretraining model has the same shape and depth).

`xl` (also `paper`) is the published ProtT5-XL-U50 / -BFD shape (Rostlab ``prot_t5_xl_uniref50`` config.json:
``num_layers`` 24 encoder + 24 decoder, ``d_model`` 1024, ``d_ff`` 16384, ``num_heads`` 32 of ``d_kv`` 128,
``feed_forward_proj`` relu, 32 relative buckets up to distance 128, ``layer_norm_epsilon`` 1e-6, dropout 0.1).
`tiny` is for tests, `small` for a laptop.
"""

XL = {"num_layers": 24, "hidden_dim": 1024, "num_heads": 32, "head_dim": 128, "intermediate_dim": 16384,
      "feed_forward": "relu", "dropout": 0.1}

PRESETS = {
    "tiny": {"num_layers": 2, "hidden_dim": 32, "num_heads": 4, "head_dim": 8, "intermediate_dim": 64},
    "small": {"num_layers": 4, "hidden_dim": 256, "num_heads": 4, "head_dim": 64, "intermediate_dim": 1024,
              "dropout": 0.1},
    "xl": XL,
    "paper": XL,
}
