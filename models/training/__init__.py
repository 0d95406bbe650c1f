"""Distributed masked-LM pretraining: a custom `tf.distribute` loop (not `Model.fit`, see trainer.py)."""
