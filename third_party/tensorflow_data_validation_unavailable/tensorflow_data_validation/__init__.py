"""Import-only stand-in for ``tensorflow_data_validation``.

``tfx`` imports TFDV at module level even when a pipeline uses no TFDV component, but TFDV 1.21 (pinned by
TFX 1.21) has no Linux wheel on PyPI. This package lets ``from tfx import v1`` import; any real use of TFDV
(StatisticsGen, SchemaGen, ExampleValidator, ExampleDiff: a call of any TFDV function or class) fails loudly instead of producing fake statistics.
"""

_MESSAGE = (
    "tensorflow_data_validation is not installed: TFDV 1.21 (required by TFX 1.21) publishes no Linux "
    "wheel, so ProtTrans-TF ships this import-only stand-in. StatisticsGen, SchemaGen, ExampleValidator and "
    "ExampleDiff are unavailable until upstream publishes one (ml-metadata#191, tfx#7743). "
    "Attribute requested: {name!r}"
)

__version__ = "1.21.0+unavailable"


class _Unavailable(type):
    """What any TFDV name resolves to: usable where TFX only names it at import time (annotations, default
    arguments), raising as soon as anything is called or constructed."""

    def __getattr__(cls, name: str):
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        return _placeholder(f"{cls.__name__}.{name}")

    def __call__(cls, *args, **kwargs):
        raise NotImplementedError(_MESSAGE.format(name=cls.__name__))


def _placeholder(name: str) -> type:
    return _Unavailable(name, (), {})


def __getattr__(name: str):
    if name.startswith("__") and name.endswith("__"):
        raise AttributeError(name)
    return _placeholder(name)
