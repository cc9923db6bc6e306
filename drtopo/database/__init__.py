"""PostgreSQL, self-managed or RDS: connect, client tools, replication lag, fencing, promotion and rebuilt standbys,
point-in-time restore, and the fast comparison of two databases.
"""
