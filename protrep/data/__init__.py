"""Data: simulated and real screens, the dataset format, readers, standards, crop transforms.

The first layer of the flow *data -> models -> training -> inference -> evaluation*; it
imports nothing from the later ones, and nothing here imports torch.

==================  =========================================================================
``proteome``        synthetic and Huh 2003 proteomes: localizations, traits, functional terms
``render``          yeast fields of view (cells, optics, camera); ``render_human`` for HPA
``segment``         segmentation of fields and crops, crops around every cell
``screen``          what every simulated screen shares (wells in parallel, the cache)
``simulate``        the simulated ORF-GFP screen; ``simulate_hpa`` the HPA-like one
``dataset``         the ``protrep-cells`` format and :class:`~protrep.data.dataset.CellDataset`
``arrays``          :class:`~protrep.data.arrays.ShardedArray`: crops on disk, read on demand
``shards``          the out-of-core (sharded) ``protrep-cells`` layout, written atomically per shard
``convert``         ``protrep convert``: users' crop trees, HDF5 and HPA sets into shards, labels joined
``readers``         every format protrep reads (:func:`~protrep.data.readers.open_dataset`)
``hpa``             Human Protein Atlas classes and readers (Kaggle layout, crops)
``standards``       functional standards: the simulated ones and the real yeast ones
``download``        public originals with checksums
``normalize``       the per-cell percentile stretch every model sees
``backgrounds``     the five background settings of Gupta et al. around a fixed centre cell
``mixed``           mixed wells: a share of the cells express a neighbour protein
``tables``          embedding and prediction tables and their files
``realism``         statistics comparing simulated crops with real ones
==================  =========================================================================
"""
