"""Models this project did not write, as a user might bring them: plain SavedModels with the serving signature."""

from __future__ import annotations


class CompositionModel:
    """A plain SavedModel this project did not write: per residue the one-hot of its letter (A–Z), per protein the
    mean; it counts only letters, so a trailing '*' is not a residue for it. No prottrans_model.json."""

    @staticmethod
    def export(path) -> None:
        import tensorflow as tf

        class Module(tf.Module):
            @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="sequences")])
            def serve(self, sequences):
                codes = tf.strings.unicode_decode(tf.strings.upper(sequences), "UTF-8") - ord("A")
                letters = tf.ragged.boolean_mask(codes, (codes >= 0) & (codes < 26))
                residues = tf.one_hot(letters.to_tensor(default_value=-1), 26)
                lengths = tf.cast(letters.row_lengths(), tf.int32)
                protein = tf.reduce_sum(residues, 1) / tf.maximum(tf.cast(lengths, tf.float32), 1.0)[:, None]
                return {"residue_embeddings": residues, "protein_embeddings": protein, "lengths": lengths}

        module = Module()
        tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
