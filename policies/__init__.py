"""The policy pack's rules as plain importable functions over a resource's type and inputs."""
