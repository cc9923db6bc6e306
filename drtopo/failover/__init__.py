"""Failover and failback: the plan of steps, the journal that makes a run resumable, the run itself, the Route53
flip and the stacks' roles.
"""
