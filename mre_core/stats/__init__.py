"""Agreement statistics between automatic and manual stiffness, stages and ROIs.

Owns Pearson r with its CI, Bland–Altman, ICC(A,1), kappa, AUC, Dice/IoU and bootstrap CIs
(:mod:`.agreement`): pure numpy/scipy functions over arrays, no I/O.

May import: numpy, scipy, scikit-learn and :mod:`mre_core.analysis.staging` (to stage values).
Nothing else of ``mre_core``.
"""
