"""The spike function and how it is differentiated (the bottom of sjframe: imports no other sjframe package).

* :mod:`sjframe.spike.surrogate`: surrogate derivatives, one definition for torch and the kernels' C text.
* :mod:`sjframe.spike.gradient`: :class:`GradientSpec` (dense | sparse | localzo) and :func:`make_spike_fn`.
* :mod:`sjframe.spike.localzo`: the LocalZO noise laws and estimate; :mod:`sjframe.spike.philox`: Philox4x32-10.
"""

from __future__ import annotations

from sjframe.spike.gradient import GRADIENT_MODES, LOCALZO_DISTRIBUTIONS, LOCALZO_RNGS, GradientSpec, make_spike_fn

__all__ = ["GRADIENT_MODES", "LOCALZO_DISTRIBUTIONS", "LOCALZO_RNGS", "GradientSpec", "make_spike_fn"]
