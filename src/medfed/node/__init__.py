"""The hospital node: dials out to the coordinator, runs only approved plans on local data."""
