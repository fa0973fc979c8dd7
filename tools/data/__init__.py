"""Datasets, transforms, loaders, the demo generator and dataset preparation (see each module)."""
