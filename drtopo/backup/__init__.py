"""Backups and their restores: daily dumps into tiers with verification, the dump store, restores of a dump or a
point in time, and the configuration backup.
"""
