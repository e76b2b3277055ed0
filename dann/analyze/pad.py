"""The proxy A-distance between two sets of examples (Ben-David et al. 2007; Ganin et al., JMLR 2016, §5.1.4).

A linear SVM learns to tell source (0) from target (1) on a fixed half of the examples and is
scored on the other half; ε is its lowest held-out error over a range of C, and

    d_A = 2 (1 − 2ε)

is near 2 when the domains are perfectly separable and near 0 when they cannot be told apart
(ε near 0.5). Taking the lowest error over C biases ε slightly down, so indistinguishable domains
give small positive values; a value just below 0 means the same as 0.

`kernel="linear"` is the paper's probe. `kernel="rbf"` (an SVM with a Gaussian kernel) also sees
domains that differ only along curved directions, as on the moons, where a hyperplane cannot.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC, LinearSVC

C_VALUES = tuple(10.0**k for k in range(-3, 3))  # 1e-3 … 1e2


def proxy_a_distance(
    source_features: np.ndarray, target_features: np.ndarray, seed: int = 0, kernel: str = "linear"
) -> float:
    """d_A of source [N, …] against target [M, …] examples (flattened to vectors); at least 2 of each.

    The larger set is subsampled to the size of the smaller, so that guessing has error 0.5 and
    d_A means the same whatever the split sizes. The split into halves (stratified by domain) and
    the subsample are drawn from `seed`: the same inputs always give the same number.
    """
    source = np.asarray(source_features, dtype=np.float64).reshape(len(source_features), -1)
    target = np.asarray(target_features, dtype=np.float64).reshape(len(target_features), -1)
    n = min(len(source), len(target))
    if n < 2:
        raise ValueError(f"proxy_a_distance: needs 2 examples of each domain or more, got {len(source)}, {len(target)}")
    rng = np.random.default_rng(seed)
    source, target = source[rng.permutation(len(source))[:n]], target[rng.permutation(len(target))[:n]]
    x = np.concatenate([source, target])
    domain = np.repeat([0, 1], n)
    x_train, x_test, d_train, d_test = train_test_split(x, domain, test_size=0.5, stratify=domain, random_state=seed)
    # Features of different layers have very different scales; C is only comparable across runs on standardised inputs.
    scaler = StandardScaler().fit(x_train)
    x_train, x_test = scaler.transform(x_train), scaler.transform(x_test)
    errors = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # small C on inseparable data: the fit is still a result
        for c in C_VALUES:
            if kernel == "linear":
                svm = LinearSVC(C=c, max_iter=5000, random_state=seed)
            elif kernel == "rbf":
                svm = SVC(C=c, kernel="rbf", gamma="scale")
            else:
                raise ValueError(f"proxy_a_distance: kernel must be 'linear' or 'rbf', got {kernel!r}")
            svm.fit(x_train, d_train)
            errors.append(1.0 - svm.score(x_test, d_test))
    return 2.0 * (1.0 - 2.0 * min(errors))
