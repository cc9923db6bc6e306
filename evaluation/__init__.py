"""The Pulumi program evaluated under Pulumi's mocks: what it registers, for the tests, the policy pack and the lab."""
