"""Developer tools: a local Synapse and `sealroom demo`. Never used by `sealroom run`."""
