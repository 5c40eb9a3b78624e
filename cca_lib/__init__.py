"""cca_lib: compare neural-network representations with CCA, SVCCA, PWCCA and CKA.

Activations are ``(n_samples, n_features)`` arrays everywhere in the public API.
The similarity functions need only numpy and scipy; the experiment engine
(``cca_lib.data``, ``models``, ``training``, ``capture``, ``experiments``) needs torch.
"""

__version__ = "0.1.0"
