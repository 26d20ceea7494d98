"""The segmentation model: build, load (SHA-256 verified), train, evaluate and describe it.

Owns the network definitions and weight files (:mod:`.network`: smp U-Net with a ResNeXt50-32x4d
encoder and the plain U-Net baseline, ``weights/<name>.safetensors`` + ``.json``), the training
dataset built from phantom cohorts (:mod:`.dataset`), training (:mod:`.train`), evaluation with the
paper's metrics (:mod:`.evaluate`), the model card (:mod:`.card`) and the pure parts of training on a site's own
reads (:mod:`.site`: split by patient, arrays, held-out comparison with CIs, the site model's card).

May import: torch, :mod:`mre_core.config`, :mod:`mre_core.io`, :mod:`mre_core.analysis`,
:mod:`mre_core.stats` and :mod:`mre_core.outputs.wording`. Never the store, the app or the workflow.
"""
