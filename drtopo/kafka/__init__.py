"""Kafka: the admin client and the offsets it reads, MirrorMaker and consumer-group lag, checkpoint-translated
offsets, topics, and the recovery of topics and group offsets after a cluster failure.
"""
