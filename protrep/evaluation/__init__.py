"""Evaluation: what the representations are worth. Imports without torch.

===============  =========================================================================
``metrics``      localization accuracy, linear probes, multi-label metrics
``retrieval``    functional AP of protein pairs ranked by cosine similarity, at four scales
                 (Razdaibiedina & Brechalov 2022), with bootstrap intervals
``handcrafted``  CellProfiler-like features inside the centre cell
``confounding``  background confounding: pairwise linear SVMs, Table 1, localization shifts
                 (Gupta et al. 2025)
``quality``      held-out quality of a trained model against its training compute
===============  =========================================================================

Functions that need trained models (``confounding.run_background``,
``quality.sweep_point``) import the inference and training layers when called, so
``import protrep.evaluation`` leaves torch unloaded.
"""
