"""Training: batches, augmentation, the one loop for every model, and trained runs.

==============  ==========================================================================
``batches``     crops as tensors, partner cells, augmentation, background randomisation
``loop``        :class:`~protrep.training.loop.TrainConfig` and :func:`~protrep.training.loop.train`
``runs``        run directories: identity, checkpoints, :func:`~protrep.training.runs.load_run`
==============  ==========================================================================

Imports data and models; the run identity (:func:`protrep.training.loop.training_code_version`)
covers exactly the code the weights depend on.
"""
