"""cca_lib: compare neural-network representations with CCA, SVCCA, PWCCA and CKA.

Activations are ``(n_samples, n_features)`` arrays everywhere in the public API.
The similarity functions (and :func:`fourier_cca` for conv layers' ``(N, C, H, W)``
activations) need only numpy and scipy; the experiment engine (``cca_lib.data``, ``models``,
``training``, ``capture``, ``experiments``) needs torch. :func:`cca_lib.capture.capture` records
the activations of named layers of any ``torch.nn.Module``.
"""

from cca_lib._validation import FewSamplesWarning
from cca_lib.fourier import FourierCCAResult, fourier_cca, fourier_mean_cca
from cca_lib.kernel_cka import rbf_cka, rbf_cka_matrix
from cca_lib.similarity import (
    CCAResult,
    cca,
    compare,
    distance,
    linear_cka,
    mean_cca,
    pwcca,
    svcca,
)
from cca_lib.streaming import Accumulator, compare_models

__version__ = "0.1.0"

__all__ = ["Accumulator", "CCAResult", "FewSamplesWarning", "FourierCCAResult", "cca", "compare",
           "compare_models", "distance", "fourier_cca", "fourier_mean_cca", "linear_cka",
           "mean_cca", "pwcca", "rbf_cka", "rbf_cka_matrix", "svcca"]
