"""The local DR lab: real PostgreSQL, Kafka with MirrorMaker 2 and an AWS emulator on loopback."""
