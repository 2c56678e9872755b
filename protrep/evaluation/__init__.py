"""Evaluation: what the representations are worth. Imports without torch.

================  =========================================================================
``metrics``       localization accuracy, linear probes, multi-label metrics
``retrieval``     functional AP of protein pairs ranked by cosine similarity, at four scales
                  (Razdaibiedina & Brechalov 2022), with bootstrap intervals
``mean_ap``       per-protein AP of retrieving functional partners, its mean (mAP), p- and
                  q-values and the fraction of proteins retrieved (Kalinin et al. 2025, copairs)
``paired``        the same over training seeds, with paired bootstrap intervals of the
                  difference between two methods and a verdict; the paper's AP beside ours
``handcrafted``   CellProfiler-like features inside the centre cell: vectorised, fast
``cellprofiler``  real CellProfiler measurements (cp-measure) inside the centre cell, and
                  their protein tables, standardised and reduced by PCA
``confounding``   background confounding: pairwise linear SVMs, Table 1, localization shifts
                  (Gupta et al. 2025)
``linear_svm``    many small linear SVMs (LinearSVC's objective) solved in one batch
``protocols``     Table 1 as Gupta et al.'s code measures it, and the strict protocol (held-out
                  proteins, grouped folds, matched donors, class-and-seed intervals); the
                  native mixed-well design
``background``    both protocols and the native test on trained models (``protrep background``)
``quality``       held-out quality of a trained model against its training compute
================  =========================================================================

Functions that need trained models (``background.run_background``,
``quality.sweep_point``) import the inference and training layers when called, so
``import protrep.evaluation`` leaves torch unloaded.
"""
