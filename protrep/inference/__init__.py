"""Inference: trained models applied to datasets (embeddings, class probabilities, throughput).

============  ==============================================================================
``embed``     cell and protein embeddings, predicted localization, reconstructions to look at
``throughput``  images per minute of a classifier (Chen 2020's headline)
============  ==============================================================================
"""
