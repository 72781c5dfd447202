"""A trained model as a hospital receives it: the bundle file, and using it on local raw data."""
