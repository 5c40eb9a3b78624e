"""cca_lib: compare neural-network representations with CCA, SVCCA, PWCCA and CKA.

Activations are ``(n_samples, n_features)`` arrays everywhere in the public API.
The similarity functions need only numpy and scipy; the experiment engine
(``cca_lib.data``, ``models``, ``training``, ``capture``, ``experiments``) needs torch.
"""

from cca_lib._validation import FewSamplesWarning
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

__all__ = ["Accumulator", "CCAResult", "FewSamplesWarning", "cca", "compare", "compare_models",
           "distance", "linear_cka", "mean_cca", "pwcca", "svcca"]
