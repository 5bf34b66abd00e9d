"""The demo: a small CNN trained on scikit-learn's bundled digits, its checkpoints and data.

:func:`load_demo` trains :class:`~peekwidgets.demo.models.DigitsCNN` once and caches the
run; :mod:`~peekwidgets.demo.datasets` loads the digits and MNIST from local files;
:mod:`~peekwidgets.demo.models` holds the demo networks and their training loop.
"""

from peekwidgets.demo.run import DemoConfig, DemoRun, default_cache_dir, load_demo

__all__ = ["DemoConfig", "DemoRun", "default_cache_dir", "load_demo"]
