"""Offline preprocessing: HMDB51-style clips -> 16-frame WebDataset shards, manifests and EDA."""
