"""The T5 encoder (the ProtT5 backbone: what is embedded and served) and the T5 decoder stack of the
pretraining model.

Pre-norm blocks with a float32 residual stream: ``x + attention(rms_norm(x))`` then ``x + feed_forward(rms_norm(x))``
(decoder blocks add cross-attention over the encoder's output between the two), a final RMS norm, dropout as T5
places it. One relative position bias per stack, bidirectional in the encoder and causal in the decoder, computed
once per call and added in every layer; cross-attention has none. Nothing is sized by sequence length, so the
encoder takes any length (`max_sequence_length` is None).
"""

from __future__ import annotations

import keras
import tensorflow as tf

from models import vocabulary
from models.layers.query_blocks import position_block, query_block
from models.prott5.layers import RelativePositionBias, T5Attention, T5FeedForward, rms_norm

BLOCKED = -1e9  # added to the scores of keys a query may not see (float32)


class T5Stack(keras.layers.Layer):
    """`num_layers` T5 blocks over embedded inputs; causal self-attention and cross-attention for a decoder."""

    def __init__(self, num_layers: int, hidden_dim: int, num_heads: int, head_dim: int, intermediate_dim: int,
                 feed_forward: str, dropout: float, layer_norm_epsilon: float, num_buckets: int, max_distance: int,
                 decoder: bool, **kwargs):
        super().__init__(**kwargs)
        self.num_layers, self.hidden_dim, self.num_heads, self.decoder = num_layers, hidden_dim, num_heads, decoder
        self.intermediate_dim = intermediate_dim
        self.position_bias = RelativePositionBias(num_heads, not decoder, num_buckets, max_distance,
                                                  name="relative_position_bias")
        self.self_attention = [T5Attention(hidden_dim, num_heads, head_dim, dropout, name=f"self_attention_{i}")
                               for i in range(num_layers)]
        self.self_norms = [rms_norm(layer_norm_epsilon, f"self_attention_norm_{i}") for i in range(num_layers)]
        self.cross_attention = [T5Attention(hidden_dim, num_heads, head_dim, dropout, name=f"cross_attention_{i}")
                                for i in range(num_layers)] if decoder else []
        self.cross_norms = [rms_norm(layer_norm_epsilon, f"cross_attention_norm_{i}")
                            for i in range(num_layers)] if decoder else []
        self.feed_forwards = [T5FeedForward(hidden_dim, intermediate_dim, feed_forward, dropout,
                                            name=f"feed_forward_{i}") for i in range(num_layers)]
        self.feed_forward_norms = [rms_norm(layer_norm_epsilon, f"feed_forward_norm_{i}") for i in range(num_layers)]
        self.final_norm = rms_norm(layer_norm_epsilon, "final_norm")
        self.drop = keras.layers.Dropout(dropout, dtype="float32")  # on the float32 residual stream: no cast to half

    def build(self, input_shape):
        shape = (None, None, self.hidden_dim)
        self.position_bias.build()
        for layer in (*self.self_attention, *self.cross_attention, *self.feed_forwards):
            layer.build(shape)
        for norm in (*self.self_norms, *self.cross_norms, *self.feed_forward_norms, self.final_norm):
            norm.build(shape)
        super().build(input_shape)

    def call(self, embedded: tf.Tensor, padding: tf.Tensor, encoded: tf.Tensor | None = None,
             encoder_padding: tf.Tensor | None = None, training=None) -> tf.Tensor:
        """`embedded` ``[batch, length, hidden]``; `padding` ``[batch, length]`` True at padding tokens; a decoder
        also takes the encoder's output and padding. Returns float32 ``[batch, length, hidden]``. An encoder at
        inference attends in query blocks and runs its feed-forward networks in position blocks
        (:mod:`models.layers.query_blocks`; one block for a short protein), with the numerics of the whole."""
        length = tf.shape(embedded)[1]
        blocked = padding[:, None, None, :]
        if self.decoder:
            blocked = blocked | (tf.range(length)[None, :] > tf.range(length)[:, None])[None, None]
        key_bias = tf.where(blocked, BLOCKED, 0.0)
        if self.decoder or training:  # training lengths are bounded, and XLA compiles no dynamic block loop
            bias = self.position_bias(length, length) + key_bias
            return self._blocks(
                embedded, lambda index, normed: self.self_attention[index](normed, normed, bias, training=training),
                lambda index, normed: self.feed_forwards[index](normed, training=training),
                encoded, encoder_padding, training)
        # One graph for every length, not a cond between this and the above: that held the encoder twice in every
        # SavedModel (0.2 GiB of graph for ProtT5-XL). Where one block holds every query, the bias is computed once
        # for all layers, as above.
        batch = tf.shape(embedded)[0]
        queries, positions = query_block(batch, self.num_heads, length), position_block(batch, self.intermediate_dim)
        whole_bias = tf.cond(queries >= length, lambda: self.position_bias(length, length) + key_bias,
                             lambda: tf.zeros([1, self.num_heads, 0, 0]))
        return self._blocks(
            embedded, lambda index, normed: self.self_attention[index].in_query_blocks(
                normed, key_bias, self.position_bias, queries, whole_bias),
            lambda index, normed: self.feed_forwards[index].in_position_blocks(normed, positions),
            None, None, training)

    def _blocks(self, embedded, self_attention, feed_forward, encoded, encoder_padding, training) -> tf.Tensor:
        """The blocks over `embedded`; `self_attention(index, normed)` and `feed_forward(index, normed)` give layer
        index's outputs."""
        cross_bias = None if encoded is None else tf.where(encoder_padding[:, None, None, :], BLOCKED, 0.0)
        hidden = self.drop(tf.cast(embedded, tf.float32), training=training)
        for index in range(self.num_layers):
            normed = self.self_norms[index](hidden)
            hidden += self.drop(tf.cast(self_attention(index, normed), tf.float32), training=training)
            if self.decoder:
                normed = self.cross_norms[index](hidden)
                hidden += self.drop(tf.cast(self.cross_attention[index](normed, encoded, cross_bias,
                                                                        training=training), tf.float32),
                                    training=training)
            hidden += self.drop(tf.cast(feed_forward(index, self.feed_forward_norms[index](hidden)), tf.float32),
                                training=training)
        return self.drop(self.final_norm(hidden), training=training)


@keras.saving.register_keras_serializable(package="prottrans")
class T5EncoderBackbone(keras.layers.Layer):
    """``token_ids [batch, length]`` (``residues </s>``, padded with 0) → encoder hidden states
    ``[batch, length, hidden_dim]`` (float32). Owns the token embedding the decoder shares."""

    token_layout = "eos"

    def __init__(self, num_layers: int, hidden_dim: int, num_heads: int, head_dim: int, intermediate_dim: int,
                 feed_forward: str = "relu", dropout: float = 0.0, layer_norm_epsilon: float = 1e-6,
                 num_buckets: int = 32, max_distance: int = 128,
                 vocabulary_size: int = vocabulary.VOCABULARY_SIZE, max_sequence_length: int | None = None,
                 token_rows: list[int] | None = None, **kwargs):
        super().__init__(**kwargs)
        self.num_layers, self.hidden_dim, self.num_heads, self.head_dim = num_layers, hidden_dim, num_heads, head_dim
        self.intermediate_dim, self.feed_forward, self.dropout = intermediate_dim, feed_forward, dropout
        self.layer_norm_epsilon, self.num_buckets, self.max_distance = layer_norm_epsilon, num_buckets, max_distance
        self.vocabulary_size, self.max_sequence_length = vocabulary_size, max_sequence_length
        self.token_rows = vocabulary.check_token_rows(token_rows, vocabulary_size)
        self.token_embedding = keras.layers.Embedding(
            vocabulary_size, hidden_dim, embeddings_initializer=keras.initializers.RandomNormal(stddev=1.0),
            name="token_embedding")
        self.encoder = T5Stack(num_layers, hidden_dim, num_heads, head_dim, intermediate_dim, feed_forward, dropout,
                               layer_norm_epsilon, num_buckets, max_distance, decoder=False, name="encoder")

    def build(self, token_ids_shape):
        self.token_embedding.build(token_ids_shape)
        self.encoder.build((None, None, self.hidden_dim))
        super().build(token_ids_shape)

    def call(self, token_ids, training=None):
        return self.encoder(self.embed_tokens(token_ids), tf.equal(token_ids, vocabulary.PAD_ID),
                            training=training)

    def embed_tokens(self, token_ids: tf.Tensor) -> tf.Tensor:
        """The token embeddings of our token ids (through `token_rows` for an imported vocabulary); the decoder
        shares them."""
        return self.token_embedding(vocabulary.checkpoint_rows(token_ids, self.token_rows))

    def stack_config(self, num_layers: int | None = None) -> dict:
        """The arguments of a :class:`T5Stack` of this shape (a decoder's, with its own depth)."""
        return {"num_layers": num_layers or self.num_layers, "hidden_dim": self.hidden_dim,
                "num_heads": self.num_heads, "head_dim": self.head_dim, "intermediate_dim": self.intermediate_dim,
                "feed_forward": self.feed_forward, "dropout": self.dropout,
                "layer_norm_epsilon": self.layer_norm_epsilon, "num_buckets": self.num_buckets,
                "max_distance": self.max_distance}

    def decoder_stack(self, num_layers: int | None = None) -> T5Stack:
        """A T5 decoder of this shape (its own depth), for a task model that decodes from this encoder."""
        return T5Stack(**self.stack_config(num_layers), decoder=True, name="decoder")

    def get_config(self):
        config = self.stack_config()
        return {**super().get_config(), **config, "vocabulary_size": self.vocabulary_size,
                "max_sequence_length": self.max_sequence_length,
                **({"token_rows": self.token_rows} if self.token_rows is not None else {})}
