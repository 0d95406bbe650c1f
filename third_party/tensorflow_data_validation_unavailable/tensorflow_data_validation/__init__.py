"""Import-only stand-in for ``tensorflow_data_validation``.

``tfx`` imports TFDV at module level even when a pipeline uses no TFDV component, but TFDV 1.21 (pinned by
TFX 1.21) has no Linux wheel on PyPI. This package lets ``from tfx import v1`` import; any real use of TFDV
(StatisticsGen, SchemaGen, ExampleValidator, ExampleDiff) fails loudly instead of producing fake statistics.
"""

_MESSAGE = (
    "tensorflow_data_validation is not installed: TFDV 1.21 (required by TFX 1.21) publishes no Linux "
    "wheel, so ProtTrans-TF ships this import-only stand-in. StatisticsGen, SchemaGen, ExampleValidator and "
    "ExampleDiff are unavailable until upstream publishes one (ml-metadata#191, tfx#7743). "
    "Attribute requested: {name!r}"
)

__version__ = "1.21.0+unavailable"


def __getattr__(name: str):
    if name.startswith("__") and name.endswith("__"):
        raise AttributeError(name)
    raise NotImplementedError(_MESSAGE.format(name=name))
