"""The drtopo library every layer shares: the contract at the bottom (settings, outputs, naming, tiers, MirrorMaker
properties, cron, report), the AWS client factory, and one package per concern: database, kafka, failover, backup,
checks. No argparse and no lab here: commands (`scripts/`) parse flags and call into it.
"""
