"""Pulumi ComponentResources that declare the DR topology, and the settings model they are built from."""
